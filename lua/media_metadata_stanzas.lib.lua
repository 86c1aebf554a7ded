-- The stanza side of mod_muc_media_metadata: which URLs a message shares, and the elements
-- written for each analysed one. Loaded by the plugin with module:require, so `module` is
-- the plugin's.
--
-- For a URL with a result the plugin may add, each unless the sender sent one of its kind
-- for that URL (the sender's own elements are never changed):
--   metadata  <metadata xmlns="xmpp:prosody.im/protocol/media-metadata#0"> inside the oob
--             element: the contract (design.md), read by no client yet.
--   sfs       XEP-0447 <file-sharing> with an XEP-0446 <file>: what Dino 0.5+ draws.
--   sims      XEP-0385 <reference><media-sharing>: what Cheogram and Movim draw.
-- What each client reads is in the comments beside each writer, with the source it was
-- read from; spec/client_readers.lua mirrors those parsers and runs them over these stanzas.

local st = require "util.stanza";
local serialize = require "util.serialization".serialize;

local xmlns_oob = "jabber:x:oob";
local xmlns_metadata = "xmpp:prosody.im/protocol/media-metadata#0";
local xmlns_sfs = "urn:xmpp:sfs:0";
local xmlns_file_metadata = "urn:xmpp:file:metadata:0";
local xmlns_hashes = "urn:xmpp:hashes:2";
local xmlns_thumbs = "urn:xmpp:thumbs:1";
local xmlns_url_data = "http://jabber.org/protocol/url-data";
local xmlns_reference = "urn:xmpp:reference:0";
local xmlns_sims = "urn:xmpp:sims:1";
-- Cheogram reads :5, then :4, then :3; Movim reads the <file> child whatever its namespace.
local xmlns_jingle_file = "urn:xmpp:jingle:apps:file-transfer:5";
-- Where Cheogram reads width, height and duration inside the SIMS <file>.
local xmlns_schema = "https://schema.org/";

local formats = { "metadata", "sfs", "sims" };

-- Field writers ----------------------------------------------------------------------------
-- Each returns the text to write, or nil for a value that does not fit: a value is never
-- trusted (it may echo what a hostile server sent), and one that util.stanza would refuse
-- must not raise on the path that releases held messages.

local function whole_number(min)
	return function (value)
		local n = type(value) == "number" and math.tointeger(value);
		if n and n >= min then
			return ("%d"):format(n);
		end
	end
end

local function text_matching(pattern, max_length)
	return function (value)
		if type(value) == "string" and #value <= max_length and value:find(pattern) then
			return value;
		end
	end
end

-- Standard base64 with padding, whole quanta only.
local function base64(max_length)
	local matches = text_matching("^[%w+/]+=?=?$", max_length);
	return function (value)
		local text = matches(value);
		if text and #text % 4 == 0 then return text; end
	end
end

-- Bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) as UTF-8.
local bidi = { "\216\156", "\226\128\142", "\226\128\143", "\226\128[\170-\174]", "\226\129[\166-\169]" };

-- A file name as the library made it safe; checked again, as it ends up in every client.
local function safe_name(value)
	if type(value) ~= "string" or #value > 255 or value == "" or value == "." or value == ".."
		or not utf8.len(value) or value:find("[\0-\31\127/\\]") or value:find("\194[\128-\159]")
		or value:find("^%s") or value:find("%s$") then
		return nil;
	end
	for _, pattern in ipairs(bidi) do
		if value:find(pattern) then return nil; end
	end
	return value;
end

local writers = {
	bytes = whole_number(0);
	type = text_matching("^[%w][%w!#$&^_.+-]*/[%w][%w!#$&^_.+-]*$", 255);
	width = whole_number(1);
	height = whole_number(1);
	blurhash = text_matching("^[%w#$%%*+,%-.:;=?@%[%]%^_{|}~]+$", 1024);
	length = whole_number(0);
	name = safe_name;
	date = text_matching("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", 20);
	sha256 = text_matching("^[%w+/]+=$", 44); -- 32 bytes: 43 characters and one "="
	thumbhash = base64(64); -- at most 25 bytes
	thumbnail = base64(2048); -- a PNG of a few hundred bytes
	thumbnail_width = whole_number(1);
	thumbnail_height = whole_number(1);
};

-- result -> the fields that fit, as text; what does not fit is logged and left out.
local function fields_of(result)
	local fields = {};
	for name, write in pairs(writers) do
		local value = result[name];
		if value ~= nil then
			local text = write(value);
			if text then
				fields[name] = text;
			else
				module:log("debug", "Leaving out %s = %s: not a valid value", name, serialize(value, "debug"));
			end
		end
	end
	return fields;
end

-- The contract element ---------------------------------------------------------------------

-- In the order the contract gives; new fields only ever go after the existing ones.
local contract_fields = { "bytes", "type", "width", "height", "blurhash", "length" };

local function metadata_element(fields)
	local metadata;
	for _, name in ipairs(contract_fields) do
		local text = fields[name];
		if text then
			metadata = metadata or st.stanza("metadata", { xmlns = xmlns_metadata });
			metadata:text_tag(name, text);
		end
	end
	return metadata;
end

-- Thumbnails --------------------------------------------------------------------------------

-- RFC 2397 data URIs take URI characters (RFC 2396 reserved and unreserved) and %XX for the
-- rest: of the BlurHash alphabet, "#" (it would start a fragment), "%", "[", "]", "^", "{",
-- "|" and "}". Cheogram parses the URI (android.net.Uri) and decodes its scheme-specific part.
local function percent_encode(text)
	return (text:gsub("[^%w%-_.!~*'();/?:@&=+$,]", function (c) return ("%%%02X"):format(c:byte()); end));
end

local function thumbnail(uri, media_type, width, height)
	return st.stanza("thumbnail", { xmlns = xmlns_thumbs; uri = uri; ["media-type"] = media_type;
		width = width; height = height });
end

local function png_thumbnail(fields)
	if fields.thumbnail and fields.thumbnail_width and fields.thumbnail_height then
		-- Both elements share one URI string (a few hundred bytes).
		fields.png_uri = fields.png_uri or "data:image/png;base64," .. fields.thumbnail;
		return thumbnail(fields.png_uri, "image/png", fields.thumbnail_width, fields.thumbnail_height);
	end
end

-- XEP-0447 file share (Dino) ------------------------------------------------------------------

local function sfs_sources(url)
	return st.stanza("sources", { xmlns = xmlns_sfs })
		:add_child(st.stanza("url-data", { xmlns = xmlns_url_data; target = url }));
end

-- Dino accepts a share only with a hash it supports (sha-256 here), and in 0.5.0 refuses
-- every share of a message as soon as one has none: no hash (a body past max_bytes, say),
-- no file share. Read in dino/dino, libdino/src/service/stateless_file_sharing.vala
-- (ReceivedMessageListener.run; v0.5.0 e23f2d8a and master 45723ac2).
local function file_share(url, fields)
	if not fields.sha256 then return nil; end
	local file = st.stanza("file", { xmlns = xmlns_file_metadata });
	if fields.type then
		-- Dino 0.5.0 reads only <media_type> (xmpp-vala/src/module/xep/0446_file_metadata_element.vala
		-- at v0.5.0), master both; the XEP writes <media-type>.
		file:text_tag("media-type", fields.type):text_tag("media_type", fields.type);
	end
	if fields.name then file:text_tag("name", fields.name); end
	if fields.bytes then file:text_tag("size", fields.bytes); end
	if fields.date then file:text_tag("date", fields.date); end
	if fields.width then file:text_tag("width", fields.width); end
	if fields.height then file:text_tag("height", fields.height); end
	if fields.length then file:text_tag("length", fields.length); end
	file:text_tag("hash", fields.sha256, { xmlns = xmlns_hashes; algo = "sha-256" });
	-- Only the PNG: Dino 0.5.0 paints only data:image/png;base64 (parse_thumbnail in
	-- main/src/ui/conversation_content_view/file_image_widget.vala), and master decodes every
	-- thumbnail with Xmpp.get_data_for_uri (xmpp-vala/src/module/util.vala), which knows no
	-- other data: URI and leaves a null that FileTransfer.persist dereferences.
	local png = png_thumbnail(fields);
	if png then file:add_child(png); end
	return st.stanza("file-sharing", { xmlns = xmlns_sfs })
		:add_child(file)
		:add_child(sfs_sources(url));
end

-- XEP-0385 SIMS (Cheogram, Movim) ---------------------------------------------------------------

local function schema_tag(file, name, text)
	if text then file:text_tag(name, text, { xmlns = xmlns_schema }); end
end

-- Cheogram (eu/siacs/conversations/entities/Message.java, FileParams(Element); cheogram-android
-- d3cf6a55) reads size in the file's namespace, width/height/duration in https://schema.org/,
-- the URL from <sources><reference uri=>, and thumbnails from the file's <thumbnail uri=>.
-- Movim (app/Message.php, movim/movim bf786260) keeps a share only with url, media-type, size
-- and name, and reads only the first <thumbnail>, drawing it only as data:image/thumbhash;base64.
local function sims_reference(url, fields)
	if not (fields.type or fields.name or fields.bytes or fields.date or fields.width or fields.height) then
		return nil;
	end
	local file = st.stanza("file", { xmlns = xmlns_jingle_file });
	if fields.type then file:text_tag("media-type", fields.type); end
	if fields.name then file:text_tag("name", fields.name); end
	if fields.bytes then file:text_tag("size", fields.bytes); end
	if fields.date then file:text_tag("date", fields.date); end
	if fields.sha256 then
		file:text_tag("hash", fields.sha256, { xmlns = xmlns_hashes; algo = "sha-256" });
	end
	schema_tag(file, "width", fields.width);
	schema_tag(file, "height", fields.height);
	if fields.length then
		local ms = tonumber(fields.length);
		schema_tag(file, "duration", ("PT%d.%03dS"):format(ms // 1000, ms % 1000));
	end
	-- ThumbHash first (Movim reads only the first; Cheogram uses the first hash it can draw
	-- while the PNG, which it draws as a picture, is taken in FileBackend.getThumbnail).
	if fields.thumbhash then
		file:add_direct_child(thumbnail("data:image/thumbhash;base64," .. fields.thumbhash, "image/thumbhash",
			fields.thumbnail_width, fields.thumbnail_height));
	end
	if fields.blurhash then
		file:add_direct_child(thumbnail("data:image/blurhash," .. percent_encode(fields.blurhash), "image/blurhash",
			fields.width, fields.height));
	end
	local png = png_thumbnail(fields);
	if png then file:add_child(png); end
	local sources = st.stanza("sources", { xmlns = xmlns_sims })
		:add_child(st.stanza("reference", { xmlns = xmlns_reference; type = "data"; uri = url }));
	return st.stanza("reference", { xmlns = xmlns_reference; type = "data"; uri = url })
		:add_child(st.stanza("media-sharing", { xmlns = xmlns_sims }):add_child(file):add_child(sources));
end

-- What the sender sent ----------------------------------------------------------------------------

-- Whether any top-level child is oob or metadata: for most messages, this scan is all the
-- work done (no allocation, so nothing for the GC either).
local function has_ours(stanza)
	for _, child in ipairs(stanza.tags) do
		local xmlns = child.attr.xmlns;
		if xmlns == xmlns_oob or xmlns == xmlns_metadata then
			return true;
		end
	end
	return false;
end

-- Drops <metadata> in our namespace that the sender put there (in any oob and at the top
-- level) and returns at most `max_urls` distinct http(s) URLs, each with the oob elements
-- that carry it, and how many more were left out.
local function strip_and_collect(stanza, max_urls)
	local wanted, by_url, ignored = {}, {}, 0;
	stanza:maptags(function (child)
		local name, xmlns = child.name, child.attr.xmlns;
		if name == "metadata" and xmlns == xmlns_metadata then
			return nil;
		elseif name == "x" and xmlns == xmlns_oob then
			child:remove_children("metadata", xmlns_metadata);
			local url = child:get_child_text("url");
			url = url and url:match("^%s*(.-)%s*$");
			-- Other schemes (aesgcm://, ...) cannot be fetched: don't spend a queue slot.
			if url and url:find("^[Hh][Tt][Tt][Pp][Ss]?://") then
				local entry = by_url[url];
				if entry then
					table.insert(entry.oobs, child);
				elseif #wanted < max_urls then
					entry = { url = url, oobs = { child } };
					by_url[url] = entry;
					wanted[#wanted+1] = entry;
				else
					ignored = ignored + 1;
				end
			end
		end
		return child;
	end);
	return wanted, ignored;
end

-- The URLs the sender already shares as SFS and as SIMS: { sfs = { [url] = true }, sims = ... },
-- and the number of <file-sharing> elements. Sources are matched by URL, as clients do.
local function senders_shares(stanza)
	local sfs, sims, file_shares = {}, {}, 0;
	local function sfs_sources(sources)
		for data in sources:childtags("url-data", xmlns_url_data) do
			if data.attr.target then sfs[data.attr.target] = true; end
		end
	end
	for _, child in ipairs(stanza.tags) do -- (childtags() would see only jabber:client children)
		local xmlns = child.attr.xmlns;
		if child.name == "file-sharing" and xmlns == xmlns_sfs then
			file_shares = file_shares + 1;
			for sources in child:childtags("sources", xmlns_sfs) do sfs_sources(sources); end
		elseif child.name == "sources" and xmlns == xmlns_sfs then
			sfs_sources(child); -- Dino 0.5.0 reads them here
		elseif child.name == "reference" and xmlns == xmlns_reference then
			local media = child:get_child("media-sharing", xmlns_sims);
			if media then
				if child.attr.uri then sims[child.attr.uri] = true; end
				for sources in media:childtags("sources", xmlns_sims) do
					for ref in sources:childtags("reference", xmlns_reference) do
						if ref.attr.uri then sims[ref.attr.uri] = true; end
					end
				end
			end
		end
	end
	return { sfs = sfs, sims = sims }, file_shares;
end

-- Adding the elements -------------------------------------------------------------------------------

-- Adds to `stanza` what is wanted in `enabled` (a set of format names) for each entry whose
-- `result` is known (entries as strip_and_collect returned them). Returns, for each entry,
-- whether anything was added (`entry.added`, the names of the elements).
local function add_elements(stanza, entries, enabled)
	local theirs, file_shares = senders_shares(stanza);
	local only_share; -- the file share when this message carries exactly one
	for _, entry in ipairs(entries) do
		if entry.result then
			local fields = fields_of(entry.result);
			local added = {};
			local metadata = enabled.metadata and metadata_element(fields);
			if metadata then
				for i, oob in ipairs(entry.oobs) do
					oob:add_direct_child(i == 1 and metadata or st.clone(metadata));
				end
				added[#added+1] = "metadata";
			end
			local share = enabled.sfs and not theirs.sfs[entry.url] and file_share(entry.url, fields);
			if share then
				stanza:add_direct_child(share);
				file_shares = file_shares + 1;
				only_share = entry.url;
				added[#added+1] = "sfs";
			end
			local sims = enabled.sims and not theirs.sims[entry.url] and sims_reference(entry.url, fields);
			if sims then
				stanza:add_direct_child(sims);
				added[#added+1] = "sims";
			end
			entry.added = added[1] and added;
		end
	end
	-- Dino 0.5.0 gives every file share of a message the first <sources> at the message's
	-- top level (get_file_shares, xmpp-vala/src/module/xep/0447_stateless_file_sharing.vala at
	-- v0.5.0); 0.5.1 and later read the one inside <file-sharing>. With one share, a copy at
	-- the top level makes 0.5.0 right too; with several, one copy would give every share the
	-- first URL, so 0.5.0 gets none and shows the placeholders without a download source.
	if only_share and file_shares == 1 and next(theirs.sfs) == nil then
		stanza:add_direct_child(sfs_sources(only_share));
	end
end

return {
	formats = formats;
	has_ours = has_ours;
	strip_and_collect = strip_and_collect;
	add_elements = add_elements;
	-- For the specs: each writer on its own.
	fields_of = fields_of;
	metadata_element = metadata_element;
	file_share = file_share;
	sims_reference = sims_reference;
};
