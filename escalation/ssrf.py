"""The SSRF guard for callback URLs: https only (http just to HANDOFF_WEBHOOK_ALLOWED_HOSTS),
and never a loopback, private, link-local, multicast or reserved address, however it is
written (IPv4, IPv6, IPv4-mapped, decimal or octal). Checked when a URL is saved and again at
every delivery, which then connects to the very address that passed."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator


class DestinationRefused(Exception):
    """The callback URL may not be called (SSRF rules): refused at create, dead at delivery."""


class DestinationUnreachable(Exception):
    """A passing failure (the name does not resolve right now): retried like any failure."""


# --- the SSRF guard ----------------------------------------------------------------------------


def _allowed_host(host: str) -> bool:
    return host.lower() in {h.lower() for h in settings.HANDOFF_WEBHOOK_ALLOWED_HOSTS}


def _literal_ip(host: str):
    """The address a host names literally, in any form a resolver accepts: dotted, IPv6,
    IPv4-mapped, and the decimal / octal / hex forms (2130706433, 0177.0.0.1, 0x7f.1)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _forbidden(ip) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_private or ip.is_reserved or ip.is_unspecified or not ip.is_global:
        return f"{ip} is a private or reserved address"
    return None


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str  # as written in the URL: the Host header and the TLS server name
    port: int
    target: str  # path and query
    address: str  # the IP address that passed the check: the connection goes here


def _split(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in ("http", "https") or not host:
        raise DestinationRefused("the callback URL must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise DestinationRefused("the callback URL must not carry credentials")
    if scheme == "http" and not _allowed_host(host):
        raise DestinationRefused(
            "the callback URL must use https (http only to HANDOFF_WEBHOOK_ALLOWED_HOSTS)"
        )
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise DestinationRefused("the callback URL has an invalid port") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, target


def _resolve(host: str, port: int) -> list:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationUnreachable(f"{host} does not resolve: {exc}") from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def check_callback_url(url: str) -> None:
    """At create time: refuse a URL whose host is, or resolves to, a forbidden address. A name
    that does not resolve now is let through; the delivery checks again."""
    scheme, host, port, _ = _split(url)
    if _allowed_host(host):
        return
    literal = _literal_ip(host)
    try:
        addresses = [literal] if literal is not None else _resolve(host, port)
    except DestinationUnreachable:
        return
    for ip in addresses:
        reason = _forbidden(ip)
        if reason:
            raise DestinationRefused(f"the callback URL may not point at {reason}")


def resolve_destination(url: str) -> Destination:
    """At delivery time: every address the host resolves to must pass (so a second record
    cannot smuggle a private one in); the connection then goes to the first."""
    scheme, host, port, target = _split(url)
    literal = _literal_ip(host)
    addresses = [literal] if literal is not None else _resolve(host, port)
    if not _allowed_host(host):
        for ip in addresses:
            reason = _forbidden(ip)
            if reason:
                raise DestinationRefused(f"the callback URL points at {reason}")
    if not addresses:
        raise DestinationUnreachable(f"{host} has no address")
    return Destination(scheme, host, port, target, str(addresses[0]))


def validate_callback_url(url: str) -> None:
    """A Django validator (model field, API serializer, create_agent): an http(s) URL that the
    SSRF rules accept."""
    URLValidator(schemes=["http", "https"], message="must be an http(s) URL")(url)
    try:
        check_callback_url(url)
    except DestinationRefused as exc:
        raise ValidationError(str(exc)) from None
