"""slixmpp test clients: plaintext c2s on loopback, raw stanzas in, every stanza recorded."""

import asyncio
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS_CLIENT = "jabber:client"
NS_OOB = "jabber:x:oob"
NS_META = "xmpp:prosody.im/protocol/media-metadata#0"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DATA = "jabber:x:data"


@dataclass
class Received:
    at: float  # time.monotonic() when the stanza was handled
    xml: ET.Element


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str):
        super().__init__(jid, password)
        # Loopback without TLS: the server offers no STARTTLS (no certificates), and
        # slixmpp must be told that a plaintext stream and SASL on it are acceptable.
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self.plugin["feature_mechanisms"].unencrypted_plain = True
        self.received: list[Received] = []
        self._session: asyncio.Future | None = None
        for kind in ("message", "presence", "iq"):
            self.register_handler(Callback(f"record {kind}", MatchXPath(f"{{{NS_CLIENT}}}{kind}"),
                                           self._record))
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_all_auth", self._on_failed)
        self.add_event_handler("connection_failed", self._on_failed)

    def _record(self, stanza) -> None:
        self.received.append(Received(time.monotonic(), stanza.xml))

    def _on_session_start(self, _event) -> None:
        self.send_presence()
        if self._session and not self._session.done():
            self._session.set_result(True)

    def _on_failed(self, event) -> None:
        if self._session and not self._session.done():
            self._session.set_exception(RuntimeError(f"{self.boundjid}: connection/auth failed: {event}"))

    async def start(self, port: int, timeout: float = 15, host: str = "127.0.0.1") -> "Client":
        self._session = self.loop.create_future()
        self.connect(host, port)
        await asyncio.wait_for(self._session, timeout)
        return self

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.disconnect(wait=1), 3)
        except Exception:
            self.abort()

    # --- waiting for stanzas ----------------------------------------------------------

    async def wait_for(self, pred, timeout: float, what: str = "stanza", start: int = 0) -> Received:
        """The first recorded stanza (from index `start`) for which pred(xml) is true."""
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self.received):
                r = self.received[i]
                i += 1
                if pred(r.xml):
                    return r
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.boundjid.bare}: no {what} within {timeout}s; got:\n"
                                   + "\n".join(ET.tostring(r.xml, encoding="unicode")[:400]
                                               for r in self.received[-8:]))
            await asyncio.sleep(0.005)

    async def wait_groupchat(self, room: str, marker: str, timeout: float = 10, start: int = 0) -> Received:
        """The groupchat message from `room` whose body contains `marker`, recorded at index
        `start` or later (a client that holds thousands can skip what it has seen)."""
        def pred(el):
            return (el.tag == f"{{{NS_CLIENT}}}message" and el.get("type") == "groupchat"
                    and el.get("from", "").startswith(room + "/")
                    and marker in (el.findtext(f"{{{NS_CLIENT}}}body") or ""))
        return await self.wait_for(pred, timeout, f"groupchat message {marker!r} from {room}", start)

    # --- MUC ------------------------------------------------------------------------

    async def join(self, room: str, nick: str, timeout: float = 10) -> ET.Element:
        """Join `room` as `nick`; returns our own presence (status 110)."""
        start = len(self.received)
        self.send_raw(f"<presence to={quoteattr(room + '/' + nick)}><x xmlns='{NS_MUC}'>"
                      f"<history maxstanzas='0'/></x></presence>")

        def pred(el):
            if el.tag != f"{{{NS_CLIENT}}}presence" or el.get("from") != f"{room}/{nick}":
                return False
            if el.get("type") == "error":
                return True
            return any(s.get("code") == "110"
                       for s in el.iterfind(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}status"))
        r = await self.wait_for(pred, timeout, f"self-presence in {room}", start)
        if r.xml.get("type") == "error":
            raise RuntimeError(f"joining {room}: {ET.tostring(r.xml, encoding='unicode')}")
        return r.xml

    @staticmethod
    def role_in(presence: ET.Element) -> str | None:
        item = presence.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
        return None if item is None else item.get("role")

    def send_groupchat(self, room: str, body: str, extra_xml: str = "", msg_id: str | None = None) -> str:
        """Send a groupchat message with raw extra payload; returns its id."""
        msg_id = msg_id or uuid.uuid4().hex
        self.send_raw(f"<message to={quoteattr(room)} type='groupchat' id={quoteattr(msg_id)}>"
                      f"<body>{escape(body)}</body>{extra_xml}</message>")
        return msg_id

    async def iq_set(self, to: str, payload: str, timeout: float = 10) -> ET.Element:
        iq = self.make_iq_set(ito=to)
        iq.xml.append(ET.fromstring(payload))
        result = await iq.send(timeout=timeout)
        return result.xml

    async def ping(self, to: str, timeout: float = 10) -> float:
        """An XEP-0199 ping to `to`; returns the seconds until the answer."""
        iq = self.make_iq_get(ito=to)
        iq.xml.append(ET.fromstring("<ping xmlns='urn:xmpp:ping'/>"))
        t0 = time.monotonic()
        await iq.send(timeout=timeout)
        return time.monotonic() - t0

    async def kick(self, room: str, nick: str, timeout: float = 10) -> None:
        """As a moderator, set `nick`'s role to none (XEP-0045 8.2)."""
        await self.iq_set(room, f"<query xmlns='{NS_MUC_ADMIN}'><item nick={quoteattr(nick)} role='none'/></query>",
                          timeout)

    async def configure_room(self, room: str, fields: dict[str, str], timeout: float = 10) -> None:
        """Submit a muc#owner configuration form (XEP-0045 10.2)."""
        values = "".join(f"<field var={quoteattr(k)}><value>{escape(v)}</value></field>"
                         for k, v in fields.items())
        await self.iq_set(room, f"<query xmlns='{NS_MUC_OWNER}'><x xmlns='{NS_DATA}' type='submit'>"
                                f"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig"
                                f"</value></field>{values}</x></query>", timeout)

    async def mam_query(self, room: str, timeout: float = 10) -> list[ET.Element]:
        """All archived messages of `room` (XEP-0313 v2): the forwarded inner <message>s,
        paged with RSM (XEP-0059) 50 at a time until the server says the set is complete."""
        out, after = [], None
        while True:
            qid = uuid.uuid4().hex
            start = len(self.received)
            rsm = f"<set xmlns='{NS_RSM}'><max>50</max>" + (
                f"<after>{escape(after)}</after>" if after else "") + "</set>"
            result = await self.iq_set(room, f"<query xmlns='{NS_MAM}' queryid='{qid}'>{rsm}</query>", timeout)
            page = 0
            for r in self.received[start:]:
                res = r.xml.find(f"{{{NS_MAM}}}result")
                if res is not None and res.get("queryid") == qid:
                    inner = res.find(f"{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")
                    if inner is not None:
                        out.append(inner)
                        page += 1
            fin = result.find(f"{{{NS_MAM}}}fin")
            assert fin is not None, xml_str(result)
            last = fin.findtext(f"{{{NS_RSM}}}set/{{{NS_RSM}}}last")
            if fin.get("complete") in ("true", "1") or not last or page == 0:
                return out
            after = last


# --- reading <metadata> --------------------------------------------------------------

def oob_metadata(msg: ET.Element) -> list[tuple[str | None, list[tuple[str, str]] | None]]:
    """For each <x xmlns=jabber:x:oob> of `msg`: (url, [(child name, text), ...] or None)."""
    out = []
    for x in msg.findall(f"{{{NS_OOB}}}x"):
        url = x.findtext(f"{{{NS_OOB}}}url")
        md = x.findall(f"{{{NS_META}}}metadata")
        assert len(md) <= 1, f"more than one <metadata> in one oob element: {xml_str(msg)}"
        if not md:
            out.append((url, None))
            continue
        children = []
        for c in md[0]:
            ns, _, name = c.tag[1:].partition("}")
            assert ns == NS_META, f"child {c.tag} of <metadata> is not in {NS_META}"
            children.append((name, (c.text or "").strip()))
        out.append((url, children))
    return out


def all_meta_elements(msg: ET.Element) -> list[ET.Element]:
    """Every element anywhere in `msg` that is in the metadata namespace."""
    return [e for e in msg.iter() if e.tag.startswith(f"{{{NS_META}}}")]


def xml_str(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode")


def oob_xml(url: str | None, inner: str = "") -> str:
    u = f"<url>{escape(url)}</url>" if url is not None else ""
    return f"<x xmlns='{NS_OOB}'>{u}{inner}</x>"
