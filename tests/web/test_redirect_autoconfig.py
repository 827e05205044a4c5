"""Where plain HTTP is sent, and the files mail clients configure themselves from."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from txmailhost.listeners import endpoint_port
from txmailhost.web.autoconfig import autodiscover_xml, mta_sts_policy, thunderbird_xml
from txmailhost.web.context import ClientSettings
from txmailhost.web.redirect import https_location


def test_redirect_goes_to_the_requested_host_on_the_https_port():
    assert https_location("", 2443, "mail.example.org:2080", "/mail?x=1") == (
        "https://mail.example.org:2443/mail?x=1"
    )
    assert https_location("", 443, "mail.example.org", "/") == "https://mail.example.org/"
    assert https_location("", 443, "[2001:db8::1]:80", "/a") == "https://[2001:db8::1]/a"


def test_redirect_prefers_the_public_url_and_refuses_a_forged_host():
    assert https_location("https://webmail.example.org", 2443, "x", "/a") == (
        "https://webmail.example.org/a"
    )
    assert https_location("", 443, "evil.example/path", "/") is None
    assert https_location("", 443, "a b", "/") is None
    assert https_location("", 443, "", "/") is None


def test_endpoint_ports():
    assert endpoint_port("tcp:993:interface=0.0.0.0") == 993
    assert endpoint_port("tcp6:port=465:interface=\\:\\:") == 465
    assert endpoint_port("") == 0 and endpoint_port("unix:/run/x.sock") == 0


def test_thunderbird_xml_escapes_the_domain_and_lists_tls_first():
    settings = ClientSettings("mx.example.org", imaps=993, imap=143, submissions=465,
                              submission=587, pop3s=0)  # fmt: skip
    root = ET.fromstring(thunderbird_xml(settings, 'a"<b>&c'))
    provider = root.find("emailProvider")
    assert provider.get("id") == 'a"<b>&c' and provider.findtext("domain") == 'a"<b>&c'
    incoming = [(s.get("type"), s.findtext("port"), s.findtext("socketType"))
                for s in provider.findall("incomingServer")]  # fmt: skip
    assert incoming == [("imap", "993", "SSL"), ("imap", "143", "STARTTLS")]
    outgoing = [(s.findtext("port"), s.findtext("socketType"))
                for s in provider.findall("outgoingServer")]  # fmt: skip
    assert outgoing == [("465", "SSL"), ("587", "STARTTLS")]


def test_autodiscover_xml_is_well_formed_with_the_address_as_login():
    xml = autodiscover_xml(ClientSettings("mx.example.org"), "a&b@example.org")
    ns = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
    logins = [p.findtext(ns + "LoginName") for p in ET.fromstring(xml).iter(ns + "Protocol")]
    assert logins == ["a&b@example.org", "a&b@example.org"]


def test_mta_sts_policy_has_rfc_8461_lines():
    settings = ClientSettings("mx.example.org", mta_sts_mode="enforce", mta_sts_max_age=86400)
    assert mta_sts_policy(settings) == (
        "version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmax_age: 86400\r\n"
    )


def test_a_redirect_back_goes_only_to_a_path_of_this_site():
    from txmailhost.web.responses import same_site_path

    assert same_site_path("/mail?folder=INBOX&page=2")
    assert same_site_path("/message?uid=3#top")
    for elsewhere in (
        "//evil.example/",
        "/\\evil.example/",  # browsers read "\" as "/"
        "/\t/evil.example/",  # and drop tabs and line breaks
        "/\n/evil.example/",
        "https://evil.example/",
        "evil.example",
        "",
        " /mail",
    ):
        assert not same_site_path(elsewhere), elsewhere
