"""The standard elements clients read (XEP-0447 file share, XEP-0385 SIMS) on a real Prosody.

A slixmpp occupant posts oob-only messages with URLs of files the test media server really
serves; another occupant receives the contract <metadata>, an SFS <file-sharing> and a SIMS
<reference>, whose values are checked against the served bytes (sha-256 of the body, the
tiny PNG decoded by Pillow). Components of this test's own Prosody:
  MUC_DOMAIN          the defaults: every element
  METADATA_ONLY       media_metadata_formats = { "metadata" }
  SMALL               media_metadata_max_bytes = SMALL_MAX: a photo past it has no hash
The plugin is installed as a plain copy (install_plugin) with its stanza library beside it
(mod_muc_media_metadata/{mod_muc_media_metadata.lua, media_metadata_stanzas.lib.lua,
media_metadata.so}).
"""

import base64
import hashlib
import io
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from conftest import PASSWORD, library_path, serving
from prosody_server import MUC_DOMAIN, REPO, ProsodyServer, install_plugin
from xmpp import Client, oob_metadata, oob_xml, xml_str

pytestmark = pytest.mark.plugin

METADATA_ONLY = "metadata-only.localhost"
SMALL = "small.localhost"
SMALL_MAX = 4096

NS = {
    "sfs": "urn:xmpp:sfs:0",
    "fm": "urn:xmpp:file:metadata:0",
    "hash": "urn:xmpp:hashes:2",
    "thumb": "urn:xmpp:thumbs:1",
    "url": "http://jabber.org/protocol/url-data",
    "ref": "urn:xmpp:reference:0",
    "sims": "urn:xmpp:sims:1",
    "jf": "urn:xmpp:jingle:apps:file-transfer:5",
    "schema": "https://schema.org/",
}

def components() -> str:
    return "\n".join(f"""
Component "{domain}" "muc"
	modules_enabled = {{ "muc_media_metadata" }}
	muc_room_locking = false
	media_metadata_allow_private = true
	{option}
""" for domain, option in ((METADATA_ONLY, 'media_metadata_formats = { "metadata" }'),
                           (SMALL, f"media_metadata_max_bytes = {SMALL_MAX}")))


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    version = request.config.getoption("--prosody")
    work = tmp_path_factory.mktemp(f"client-elements-{version}")
    plugins = install_plugin(work / "plugins", REPO / "lua/mod_muc_media_metadata.lua", library_path())
    s = ProsodyServer(version, work, [plugins], with_plugin=True, extra_config=components())
    with serving(s, request, ("alice", "bob"), f"Prosody {version} (client elements)"):
        yield s


@pytest.fixture
def pair(run, server):
    """pair(domain) -> (alice, bob, room): both in a fresh room of `domain`."""
    clients = []

    async def _pair(domain: str):
        room = f"room-{uuid.uuid4().hex[:10]}@{domain}"
        for user, nick in (("alice", "A"), ("bob", "B")):
            c = Client(f"{user}@localhost/{uuid.uuid4().hex[:6]}", PASSWORD)
            clients.append(c)
            await c.start(server.c2s_port)
            await c.join(room, nick)
        return clients[-2], clients[-1], room

    yield _pair
    for c in clients:
        run(c.stop(), timeout=10)


async def exchange(a, b, room, extra_xml: str) -> ET.Element:
    marker = uuid.uuid4().hex
    a.send_groupchat(room, marker, extra_xml)
    return (await b.wait_groupchat(room, marker, 15)).xml


def q(name: str) -> str:
    prefix, _, local = name.partition(":")
    return f"{{{NS[prefix]}}}{local}"


def file_shares(msg: ET.Element) -> list[ET.Element]:
    return msg.findall(q("sfs:file-sharing"))


def sims_refs(msg: ET.Element) -> list[ET.Element]:
    return [r for r in msg.findall(q("ref:reference")) if r.find(q("sims:media-sharing")) is not None]


def sfs_url(share: ET.Element) -> str:
    return share.find(q("sfs:sources")).find(q("url:url-data")).get("target")


def sims_url(ref: ET.Element) -> str:
    return ref.find(q("sims:media-sharing")).find(q("sims:sources")).find(q("ref:reference")).get("uri")


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def check_png_thumbnail(thumb: ET.Element, width: int, height: int) -> None:
    """The tiny PNG decodes, is the size it says, 8 px on the long side, with the file's aspect."""
    uri = thumb.get("uri")
    assert uri.startswith("data:image/png;base64,"), uri
    assert thumb.get("media-type") == "image/png"
    png = base64.b64decode(uri.split(",", 1)[1], validate=True)
    im = Image.open(io.BytesIO(png))
    im.load()
    assert im.format == "PNG"
    assert im.size == (int(thumb.get("width")), int(thumb.get("height"))), (im.size, thumb.attrib)
    assert max(im.size) == 8, im.size
    assert abs(im.size[0] / im.size[1] - width / height) <= 1 / min(im.size), (im.size, width, height)


@pytest.mark.parametrize("name", ["photo.jpg", "rotated.jpg", "transparent.png"])
def test_each_element_is_right_for_a_served_file(run, pair, media, name):
    f = media.files[name]
    url = media.url(name, tag="clients")

    async def body():
        a, b, room = await pair(MUC_DOMAIN)
        return await exchange(a, b, room, oob_xml(url))

    msg = run(body())
    [(got_url, contract)] = oob_metadata(msg)
    assert got_url == url and contract is not None, xml_str(msg)
    assert dict(contract)["bytes"] == str(f.size)

    [share] = file_shares(msg)
    file = share.find(q("fm:file"))
    assert file.findtext(q("fm:media-type")) == file.findtext(q("fm:media_type")) == f.content_type
    assert file.findtext(q("fm:name")) == name
    assert int(file.findtext(q("fm:size"))) == f.size
    assert (int(file.findtext(q("fm:width"))), int(file.findtext(q("fm:height")))) == (f.width, f.height)
    [h] = file.findall(q("hash:hash"))
    assert h.get("algo") == "sha-256"
    assert h.text == sha256_b64(f.data), "the hash is not the served file's"
    [thumb] = file.findall(q("thumb:thumbnail"))  # only the PNG: Dino decodes no other data: URI
    check_png_thumbnail(thumb, f.width, f.height)
    assert sfs_url(share) == url
    # One share: a top-level copy of its sources for Dino 0.5.0.
    [top] = msg.findall(q("sfs:sources"))
    assert top.find(q("url:url-data")).get("target") == url

    [ref] = sims_refs(msg)
    assert ref.get("type") == "data" and sims_url(ref) == url
    jf = ref.find(q("sims:media-sharing")).find(q("jf:file"))
    assert jf.findtext(q("jf:media-type")) == f.content_type
    assert jf.findtext(q("jf:name")) == name
    assert int(jf.findtext(q("jf:size"))) == f.size
    assert (int(jf.findtext(q("schema:width"))), int(jf.findtext(q("schema:height")))) == (f.width, f.height)
    assert jf.find(q("hash:hash")).text == sha256_b64(f.data)
    thumbs = jf.findall(q("thumb:thumbnail"))
    assert [t.get("media-type") for t in thumbs] == ["image/thumbhash", "image/blurhash", "image/png"]
    th = base64.b64decode(thumbs[0].get("uri").removeprefix("data:image/thumbhash;base64,"), validate=True)
    assert 5 <= len(th) <= 25, th
    assert thumbs[1].get("uri").startswith("data:image/blurhash,")
    check_png_thumbnail(thumbs[2], f.width, f.height)
    # The three placeholders together stay under 1 KiB (issue 14, point 2).
    assert sum(len(t.get("uri")) for t in thumbs) < 1024, [t.get("uri") for t in thumbs]
    assert media.hits(url) == 1


def test_a_pdf_has_a_hash_and_no_thumbnail(run, pair, media):
    f = media.files["doc.pdf"]
    url = media.url("doc.pdf", tag="clients")

    async def body():
        a, b, room = await pair(MUC_DOMAIN)
        return await exchange(a, b, room, oob_xml(url))

    msg = run(body())
    [share] = file_shares(msg)
    file = share.find(q("fm:file"))
    assert file.findtext(q("fm:media-type")) == "application/pdf"
    assert file.find(q("hash:hash")).text == sha256_b64(f.data)
    assert file.find(q("thumb:thumbnail")) is None
    [ref] = sims_refs(msg)
    assert ref.find(q("sims:media-sharing")).find(q("jf:file")).find(q("thumb:thumbnail")) is None


def tree(el: ET.Element) -> tuple:
    """Every name, attribute, text and child of `el`: what is left of its bytes once a server
    has parsed and written it again (prefixes, quotes and attribute order are its own)."""
    return (el.tag, sorted(el.attrib.items()), el.text or "", el.tail or "", [tree(c) for c in el])


def test_the_senders_own_elements_are_left_as_sent(run, pair, media):
    """A Dino-style share for the photo and a Cheogram-style SIMS for the PNG, sent by the
    occupant: both arrive as sent (every name, attribute and text), and the module adds only
    the kinds they lack."""
    photo, png = media.url("photo.jpg", tag="own"), media.url("transparent.png", tag="own")
    their_sfs = (f"<file-sharing xmlns='{NS['sfs']}' id='theirs'><file xmlns='{NS['fm']}'>"
                 f"<media-type>image/jpeg</media-type><name>mine.jpg</name><size>7</size>"
                 f"<hash xmlns='{NS['hash']}' algo='sha-256'>{sha256_b64(b'mine')}</hash></file>"
                 f"<sources><url-data xmlns='{NS['url']}' target='{photo}'/></sources></file-sharing>")
    their_sims = (f"<reference xmlns='{NS['ref']}' type='data'><media-sharing xmlns='{NS['sims']}'>"
                  f"<file xmlns='{NS['jf']}'><name>theirs.png</name></file>"
                  f"<sources><reference xmlns='{NS['ref']}' type='data' uri='{png}'/></sources>"
                  f"</media-sharing></reference>")

    async def body():
        a, b, room = await pair(MUC_DOMAIN)
        return await exchange(a, b, room, oob_xml(photo) + their_sfs + oob_xml(png) + their_sims)

    msg = run(body())
    shares, refs = file_shares(msg), sims_refs(msg)
    assert [sfs_url(s) for s in shares] == [photo, png], xml_str(msg)
    assert [sims_url(r) for r in refs] == [png, photo], xml_str(msg)
    assert tree(shares[0]) == tree(ET.fromstring(their_sfs))
    assert tree(refs[0]) == tree(ET.fromstring(their_sims))
    assert msg.findall(q("sfs:sources")) == []  # two shares: no top-level copy for Dino 0.5.0


def test_formats_metadata_only(run, pair, media):
    url = media.url("photo.jpg", tag="formats")

    async def body():
        a, b, room = await pair(METADATA_ONLY)
        return await exchange(a, b, room, oob_xml(url))

    msg = run(body())
    [(_, contract)] = oob_metadata(msg)
    assert contract is not None, xml_str(msg)
    assert file_shares(msg) == [] and sims_refs(msg) == [] and msg.findall(q("sfs:sources")) == [], xml_str(msg)


def test_a_body_past_max_bytes_has_no_hash_and_so_no_file_share(run, pair, media):
    f = media.files["photo.jpg"]
    assert f.size > SMALL_MAX
    url = media.url("photo.jpg", tag="big")

    async def body():
        a, b, room = await pair(SMALL)
        return await exchange(a, b, room, oob_xml(url))

    msg = run(body())
    [(_, contract)] = oob_metadata(msg)
    assert contract is not None, xml_str(msg)
    assert file_shares(msg) == [], xml_str(msg)
    [ref] = sims_refs(msg)
    jf = ref.find(q("sims:media-sharing")).find(q("jf:file"))
    assert jf.find(q("hash:hash")) is None
    assert jf.findtext(q("jf:media-type")) == "image/jpeg"
    assert sims_url(ref) == url


def test_the_stanza_library_is_what_the_plugin_loaded(server):
    """No element without the library beside the plugin: the plain copy carries it."""
    assert (Path(server.plugin_paths[0]) / "mod_muc_media_metadata" / "media_metadata_stanzas.lib.lua").is_file()
    assert "Failed to load plugin library" not in server.log_text()
