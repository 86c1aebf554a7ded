-- What four clients read from a received message, mirrored in Lua from their parsers (not
-- their code: the same lookups, in the same places, with the same quirks). Each reader takes
-- a util.stanza message and returns a list of shares, one per file the client would show:
--   { url=, size=, type=, name=, width=, height=, hash= (sha-256 base64), date=,
--     thumbnails = { { uri=, media_type=, width=, height= }, ... }, preview = what it paints }
-- Sources (commit, file):
--   Dino 0.5.0   dino/dino e23f2d8a (tag v0.5.0)
--   Dino master  dino/dino 45723ac2
--   Cheogram     ndrancs/cheogram-android (a mirror of cheogram-android) d3cf6a55
--   Movim        movim/movim bf786260

local readers = {};

local ns = {
	sfs = "urn:xmpp:sfs:0"; file_metadata = "urn:xmpp:file:metadata:0"; hashes = "urn:xmpp:hashes:2";
	thumbs = "urn:xmpp:thumbs:1"; url_data = "http://jabber.org/protocol/url-data";
	reference = "urn:xmpp:reference:0"; sims = "urn:xmpp:sims:1"; schema = "https://schema.org/";
	oob = "jabber:x:oob";
};
readers.ns = ns;

local function text_of(parent, name, xmlns)
	local child = parent:get_child(name, xmlns);
	return child and child:get_text();
end

local function int(text) return text and math.tointeger(tonumber(text)); end

-- xmpp-vala/src/module/xep/0264_jingle_content_thumbnails.vala (both versions): every
-- <thumbnail xmlns=urn:xmpp:thumbs:1> with a uri; media-type, width, height attributes.
local function xep0264_thumbnails(file)
	local list = {};
	for t in file:childtags("thumbnail", ns.thumbs) do
		if t.attr.uri then
			list[#list+1] = { uri = t.attr.uri, media_type = t.attr["media-type"],
				width = int(t.attr.width), height = int(t.attr.height) };
		end
	end
	return list;
end

-- xmpp-vala/src/module/xep/0300_cryptographic_hashes.vala: hash_string_to_type knows
-- sha-1, sha-256, sha-384, sha-512.
local supported_hash = { ["sha-1"] = true; ["sha-256"] = true; ["sha-384"] = true; ["sha-512"] = true };

local function hashes_of(file)
	local sha256, supported = nil, false;
	for h in file:childtags("hash", ns.hashes) do
		supported = supported or supported_hash[h.attr.algo] or false;
		if h.attr.algo == "sha-256" then sha256 = h:get_text(); end
	end
	return sha256, supported;
end

-- 0104_http_scheme_url_data.vala get_url: the first <url-data> child's target.
local function first_url_data(sources)
	local data = sources and sources:get_child("url-data", ns.url_data);
	return data and data.attr.target;
end

-- Dino's 0446 get_file_metadata, minus the media type (the versions differ there).
local function dino_file(file)
	return {
		name = text_of(file, "name"); size = int(text_of(file, "size")); date = text_of(file, "date");
		width = int(text_of(file, "width")); height = int(text_of(file, "height"));
		length = int(text_of(file, "length")); thumbnails = xep0264_thumbnails(file);
	};
end

-- 0.5.0 parse_thumbnail (main/src/ui/conversation_content_view/file_image_widget.vala): the
-- first thumbnail whose uri is data:image/png;base64,... is painted, scaled to width x height.
local function dino_050_preview(thumbnails)
	for _, t in ipairs(thumbnails) do
		local b64 = t.uri:match("^data:image/png;base64,(.+)$");
		if b64 then return b64; end
	end
end

-- Dino 0.5.0: StatelessFileSharing.get_file_shares (0447_stateless_file_sharing.vala at
-- v0.5.0) takes each <file-sharing>'s <file>, but the FIRST <sources> at the message's top
-- level for every share; the 0446 parser reads <media_type>. Then ReceivedMessageListener.run
-- (libdino/src/service/stateless_file_sharing.vala) returns false, accepting no share of the
-- message, as soon as one share has no supported hash.
function readers.dino_050(message)
	local shares = {};
	local top_sources = message:get_child("sources", ns.sfs);
	for fs in message:childtags("file-sharing", ns.sfs) do
		local file = fs:get_child("file", ns.file_metadata);
		if file then
			local share = dino_file(file);
			share.type = text_of(file, "media_type");
			share.hash, share.supported_hash = hashes_of(file);
			share.url = first_url_data(top_sources);
			share.preview = dino_050_preview(share.thumbnails);
			shares[#shares+1] = share;
		end
	end
	for _, share in ipairs(shares) do
		if not share.supported_hash then return {}, "a share without a supported hash: none accepted"; end
	end
	return shares;
end

-- Dino master: <sources> inside <file-sharing>; <media_type> then <media-type> (the latter
-- wins); each thumbnail decoded by Xmpp.get_data_for_uri (xmpp-vala/src/module/util.vala),
-- which knows only data:image/png;base64, and cid:...@bob.xmpp.org: anything else leaves a
-- null that FileTransfer.persist (libdino/src/entity/file_transfer.vala) dereferences.
function readers.dino_master(message)
	local shares = {};
	for fs in message:childtags("file-sharing", ns.sfs) do
		local file = fs:get_child("file", ns.file_metadata);
		if file then
			local share = dino_file(file);
			share.type = text_of(file, "media-type") or text_of(file, "media_type");
			share.hash, share.supported_hash = hashes_of(file);
			share.url = first_url_data(fs:get_child("sources", ns.sfs));
			for _, t in ipairs(share.thumbnails) do
				if not t.uri:find("^data:image/png;base64,") and not t.uri:find("@bob%.xmpp%.org$") then
					return {}, "a thumbnail Dino master cannot decode: " .. t.uri;
				end
			end
			share.preview = dino_050_preview(share.thumbnails);
			shares[#shares+1] = share;
		end
	end
	for _, share in ipairs(shares) do
		if not share.supported_hash then return {}, "a share without a supported hash: none accepted"; end
	end
	return shares;
end

local function percent_decode(text)
	return (text:gsub("%%(%x%x)", function (h) return string.char(tonumber(h, 16)); end));
end

-- Cheogram: MessageParser (src/main/java/eu/siacs/conversations/parser/MessageParser.java)
-- takes every top-level <reference xmlns=urn:xmpp:reference:0> holding <media-sharing
-- xmlns=urn:xmpp:sims:1>, then every oob <x>, into a set of FileParams keyed by URL (SIMS
-- first, so they win). FileParams(Element) (entities/Message.java): url = the reference's
-- uri, then <sources><reference uri=>; the <file> in jingle file-transfer :5, else :4, else
-- :3; size in the file's namespace; width, height, duration in https://schema.org/; name and
-- media-type in the file's namespace; thumbnails = the file's <thumbnail xmlns=thumbs:1>.
-- FileBackend (persistance/FileBackend.java) paints the first data: thumbnail it can decode
-- as image/blurhash (the URI's scheme-specific part, percent-decoded) or image/thumbhash
-- (base64), and separately a picture thumbnail (image/png ...) when there is one.
function readers.cheogram(message)
	local shares, by_url = {}, {};
	local function add(share)
		if share.url and by_url[share.url] then return; end
		if share.url then by_url[share.url] = share; end
		shares[#shares+1] = share;
	end
	for ref in message:childtags("reference", ns.reference) do
		local media = ref:get_child("media-sharing", ns.sims);
		if media then
			local share = { url = ref.attr.uri, thumbnails = {} };
			local file;
			for _, v in ipairs({ 5, 4, 3 }) do
				file = file or media:get_child("file", "urn:xmpp:jingle:apps:file-transfer:" .. v);
			end
			if file then
				share.size = int(text_of(file, "size", file.attr.xmlns));
				share.width = int(text_of(file, "width", ns.schema));
				share.height = int(text_of(file, "height", ns.schema));
				share.duration = text_of(file, "duration", ns.schema);
				share.name = text_of(file, "name", file.attr.xmlns);
				share.type = text_of(file, "media-type", file.attr.xmlns);
				share.date = text_of(file, "date", file.attr.xmlns);
				for h in file:childtags("hash", ns.hashes) do
					if h.attr.algo == "sha-256" then share.hash = h:get_text(); end
				end
				share.thumbnails = xep0264_thumbnails(file);
			end
			local sources = media:get_child("sources", ns.sims);
			local source = sources and sources:get_child("reference", ns.reference);
			if source then share.url = source.attr.uri; end
			for _, t in ipairs(share.thumbnails) do
				local media_type, params, data = t.uri:match("^data:([^;,]*)([^,]*),(.*)$");
				if media_type == "image/blurhash" or media_type == "image/thumbhash" then
					local decoded = params:find(";base64") and data or percent_decode(data);
					share.preview = share.preview or { type = media_type, data = decoded };
				elseif media_type == "image/png" then
					share.picture = share.picture or data;
				end
			end
			add(share);
		end
	end
	for x in message:childtags("x", ns.oob) do
		add({ url = x:get_child_text("url"), thumbnails = {} });
	end
	return shares;
end

-- Movim: Message::set (app/Message.php) reads `$stanza->reference`, the FIRST <reference>
-- child only, and only if its xmlns is urn:xmpp:reference:0 and it holds <media-sharing
-- xmlns=urn:xmpp:sims:1>: from its <file> (any namespace) media-type (when it matches
-- \w+/[-+.\w]+), size, name; the URL from <sources><reference uri=> (a valid URL); the first
-- <thumbnail> only, kept as a thumbhash when its uri starts data:image/thumbhash;base64,.
-- The share is kept only with url, type, size and name all set.
-- SimpleXML's $element->name: the first child of that name.
local function first_named(parent, name)
	for _, child in ipairs(parent.tags) do
		if child.name == name then return child; end
	end
end

function readers.movim(message)
	local ref = first_named(message, "reference");
	if not ref or ref.attr.xmlns ~= ns.reference then return {}; end
	local media = ref:get_child("media-sharing", ns.sims);
	if not media then return {}; end
	local file = first_named(media, "file");
	local share = { thumbnails = {} };
	if file then
		local media_type = text_of(file, "media-type", file.attr.xmlns);
		if media_type and media_type:find("%w+/[-+.%w]+") then share.type = media_type; end
		share.size = int(text_of(file, "size", file.attr.xmlns));
		share.name = text_of(file, "name", file.attr.xmlns);
		local thumb = file:get_child("thumbnail", ns.thumbs);
		if thumb and thumb.attr.uri then
			share.thumbnails[1] = { uri = thumb.attr.uri, media_type = thumb.attr["media-type"],
				width = int(thumb.attr.width), height = int(thumb.attr.height) };
			local b64 = thumb.attr.uri:match("^data:image/thumbhash;base64,(.+)$");
			if b64 then share.preview = { type = thumb.attr["media-type"], data = b64 }; end
		end
	end
	local sources = media:get_child("sources", ns.sims);
	local source = sources and sources:get_child("reference", ns.reference);
	if source and source.attr.uri and source.attr.uri:find("^https?://[^/%s]+") then share.url = source.attr.uri; end
	if not (share.url and share.type and share.size and share.size ~= 0 and share.name and share.name ~= "") then
		return {};
	end
	return { share };
end

return readers;
