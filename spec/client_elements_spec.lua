-- busted specs for the elements clients read (lua/media_metadata_stanzas.lib.lua): the
-- stanzas the plugin broadcasts, serialised and parsed again as a client receives them, read
-- by Lua mirrors of the parsers of Dino 0.5.0, Dino master, Cheogram and Movim
-- (spec/helpers/client_readers.lua, which names each source file and commit).
-- Run from the repository root: busted --lua=lua5.4 spec/client_elements_spec.lua

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".";
package.path = ("%s/helpers/?.lua;%s"):format(spec_dir, package.path);
local stand_ins = require "stand_ins";
local readers = require "client_readers";

local xmlns_metadata = "xmpp:prosody.im/protocol/media-metadata#0";
local ns = readers.ns;

local photo = "https://upload.example.net/abc/photo.jpg";
local portrait = "https://upload.example.net/abc/portrait.jpg";
local png_b64 = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAGCAIAAABxZ0isAAAAFElEQVR4nGM8kWLEgA0wYRWlkwQAzwgBauHxkvkAAAAASUVORK5CYII=";
local sha = "VcZND81vnV98goCThX4/39poR4u06b0k1IHvORx4BOg=";
local thumbhash = "1QcSHQRnh493V4dIh4eXh1h4kJUI";
local blurhash = "LEHV6nWB2yk8pyo0adR*.7kCMdnj";

-- A result as the library's analyze() and pool:drain() give it (common.md, issue 14).
local function photo_result(overrides, without)
	local r = {
		bytes = 15690, type = "image/jpeg", width = 4032, height = 3024, blurhash = blurhash,
		name = "photo.jpg", date = "2026-01-02T03:04:05Z", sha256 = sha, thumbhash = thumbhash,
		thumbnail = png_b64, thumbnail_width = 8, thumbnail_height = 6,
	};
	for k, v in pairs(overrides or {}) do r[k] = v; end
	for _, k in ipairs(without or {}) do r[k] = nil; end
	return r;
end

local function groupchat(inner, body)
	return stand_ins.parse(("<message xmlns='jabber:client' type='groupchat' id='m1'"
		.. " to='room@conference.example.com' from='juliet@example.com/balcony'>"
		.. "<body>%s</body>%s</message>"):format(body or "look", inner or ""));
end

local function oob(url) return ("<x xmlns='jabber:x:oob'><url>%s</url></x>"):format(url); end

local juliet = "juliet@example.com/balcony";

-- The plugin with a stand-in pool; juliet's message with `inner` goes through a room, the
-- pool completes each URL with its result, and what the room broadcast comes back parsed
-- from its serialised form (what a client receives).
local function through_plugin(inner, results, config)
	stand_ins.reset();
	local lib = stand_ins.native();
	package.loaded.media_metadata = lib;
	local module = stand_ins.module(config);
	stand_ins.load_plugin(module);
	local pool = lib.pools[1];
	local room = stand_ins.room("room@conference.example.com");
	room:join(juliet, "juliet");
	stand_ins.send_groupchat(module, room, groupchat(inner));
	for url, result in pairs(results) do pool:complete(url, result); end
	stand_ins.server.watchers[1]:onreadable();
	stand_ins.flush();
	assert.equal(1, #room.broadcasts);
	return stand_ins.parse(room.broadcasts[1].xml), module, room.broadcasts[1].xml;
end

local function top_level(stanza, name, xmlns)
	local list = {};
	for _, child in ipairs(stanza.tags) do
		if child.name == name and child.attr.xmlns == xmlns then list[#list+1] = child; end
	end
	return list;
end

-- An element as text with its attributes sorted: Prosody writes them in pairs() order.
local function canonical(el)
	if type(el) == "string" then return el; end
	local attrs = {};
	for k, v in pairs(el.attr) do attrs[#attrs+1] = ("%s=%q"):format(k, v); end
	table.sort(attrs);
	local parts = { "<" .. el.name .. " " .. table.concat(attrs, " ") .. ">" };
	for _, child in ipairs(el) do parts[#parts+1] = canonical(child); end
	return table.concat(parts) .. "</" .. el.name .. ">";
end

-- What every reader must find for the photo.
local function assert_photo(share, reader)
	assert.equal(photo, share.url, reader);
	assert.equal(15690, share.size, reader);
	assert.equal("image/jpeg", share.type, reader);
	assert.equal("photo.jpg", share.name, reader);
end

describe("the elements clients read", function ()
	after_each(function () package.loaded.media_metadata = nil; end);

	describe("for one photo", function ()
		local message;
		setup(function () message = through_plugin(oob(photo), { [photo] = photo_result() }); end);

		it("keeps the contract element first, inside the oob element, unchanged", function ()
			local x = message:get_child("x", ns.oob);
			assert.equal("<x xmlns='jabber:x:oob'><url>" .. photo .. "</url><metadata xmlns='" .. xmlns_metadata
				.. "'><bytes>15690</bytes><type>image/jpeg</type><width>4032</width><height>3024</height><blurhash>"
				.. blurhash .. "</blurhash></metadata></x>", tostring(x));
		end);

		it("is one file share Dino 0.5.0 accepts, with every field, its hash, the URL and a PNG it paints", function ()
			local shares, why = readers.dino_050(message);
			assert.is_nil(why);
			assert.equal(1, #shares);
			local s = shares[1];
			assert_photo(s, "dino 0.5.0");
			assert.same({ 4032, 3024 }, { s.width, s.height });
			assert.equal(sha, s.hash);
			assert.equal("2026-01-02T03:04:05Z", s.date);
			assert.equal(png_b64, s.preview);
			assert.same({ { uri = "data:image/png;base64," .. png_b64, media_type = "image/png", width = 8, height = 6 } },
				s.thumbnails);
		end);

		it("is one file share Dino master accepts, reading the sources inside <file-sharing>", function ()
			local shares, why = readers.dino_master(message);
			assert.is_nil(why);
			assert.equal(1, #shares);
			assert_photo(shares[1], "dino master");
			assert.same({ 4032, 3024, sha, png_b64 }, { shares[1].width, shares[1].height, shares[1].hash, shares[1].preview });
		end);

		it("is one SIMS Cheogram reads, with dimensions in schema.org, and both hashes and the PNG", function ()
			local shares = readers.cheogram(message);
			assert.equal(1, #shares); -- the oob <x> for the same URL is the same attachment
			local s = shares[1];
			assert_photo(s, "cheogram");
			assert.same({ 4032, 3024, sha, "2026-01-02T03:04:05Z" }, { s.width, s.height, s.hash, s.date });
			assert.same({ type = "image/thumbhash", data = thumbhash }, s.preview);
			assert.equal(png_b64, s.picture);
			local uris = {};
			for _, t in ipairs(s.thumbnails) do uris[#uris+1] = t.uri; end
			assert.same({ "data:image/thumbhash;base64," .. thumbhash,
				"data:image/blurhash," .. blurhash, "data:image/png;base64," .. png_b64 }, uris);
		end);

		it("gives Cheogram the BlurHash intact through the data: URI's percent-encoding", function ()
			local hash = "|rF?hV%2WCj[ayj[a|j[az_NaeWBj@ayfRayfQfQM{M|azj[azf6fQfQfQIpWXofj[ayj[j[fQayWCoeoeaya}j[ayfQa{oLj?j[WVj[ayayj[fQoff7azayj[ayj[j[ayofayayayj[fQj[ayayj[ayfjj[j[ayjuayj[";
			local m = through_plugin(oob(photo), { [photo] = photo_result({ blurhash = hash }, { "thumbhash" }) });
			local s = readers.cheogram(m)[1];
			assert.same({ type = "image/blurhash", data = hash }, s.preview);
			local uri = s.thumbnails[1].uri;
			assert.is_nil(uri:find("[#%[%]{}|^]"), uri); -- none left raw
			assert.truthy(uri:find("%25", 1, true), uri);
		end);

		it("is a SIMS Movim keeps (url, type, size, name) and draws by its ThumbHash", function ()
			local shares = readers.movim(message);
			assert.equal(1, #shares);
			assert_photo(shares[1], "movim");
			assert.same({ type = "image/thumbhash", data = thumbhash }, shares[1].preview);
			assert.same({ 8, 6 }, { shares[1].thumbnails[1].width, shares[1].thumbnails[1].height });
		end);

		it("adds exactly these elements, in this order", function ()
			local names = {};
			for _, child in ipairs(message.tags) do names[#names+1] = child.name .. " " .. child.attr.xmlns; end
			assert.same({ "body jabber:client", "x jabber:x:oob", "file-sharing urn:xmpp:sfs:0",
				"reference urn:xmpp:reference:0", "sources urn:xmpp:sfs:0" }, names);
		end);
	end);

	it("without a hash (a body past max_bytes) adds no file share, and still the SIMS and contract elements", function ()
		local m = through_plugin(oob(photo), { [photo] = photo_result({ note = "past max_bytes" }, { "sha256" }) });
		assert.same({}, top_level(m, "file-sharing", ns.sfs));
		assert.same({}, top_level(m, "sources", ns.sfs));
		assert.same({}, readers.dino_050(m));
		assert.equal(1, #readers.movim(m));
		assert.is_nil(readers.cheogram(m)[1].hash);
		assert.truthy(m:get_child("x", ns.oob):get_child("metadata", xmlns_metadata));
	end);

	it("gives each URL of a message its own share; Dino 0.5.0 gets no top-level <sources> rather than a wrong one", function ()
		local m = through_plugin(oob(photo) .. oob(portrait), {
			[photo] = photo_result(),
			[portrait] = photo_result({ name = "portrait.jpg", width = 3024, height = 4032, bytes = 999,
				sha256 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=" }),
		});
		local master = readers.dino_master(m);
		assert.same({ photo, portrait }, { master[1].url, master[2].url });
		assert.same({ 4032, 999 }, { master[1].width, master[2].size });
		local old = readers.dino_050(m);
		assert.equal(2, #old); -- both placeholders, sized, with their previews
		assert.same({ 3024, 4032 }, { old[2].width, old[2].height });
		assert.is_nil(old[1].url);
		assert.is_nil(old[2].url); -- 0.5.0 would have given both the first URL
		local cheogram = readers.cheogram(m);
		assert.same({ photo, portrait }, { cheogram[1].url, cheogram[2].url });
		assert.same({ 15690, 999 }, { cheogram[1].size, cheogram[2].size });
		local movim = readers.movim(m);
		assert.equal(1, #movim); -- Movim reads the first <reference> of a message only
		assert.equal(photo, movim[1].url);
	end);

	it("leaves the sender's own file share and SIMS byte for byte, adds none of theirs again, and still adds the rest", function ()
		local their_sfs = "<file-sharing xmlns='urn:xmpp:sfs:0' id='s1'><file xmlns='urn:xmpp:file:metadata:0'>"
			.. "<media-type>image/jpeg</media-type><name>mine.jpg</name><size>1</size>"
			.. "<hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>" .. sha .. "</hash></file>"
			.. "<sources><url-data xmlns='http://jabber.org/protocol/url-data' target='" .. photo .. "'/></sources></file-sharing>";
		local their_sims = "<reference xmlns='urn:xmpp:reference:0' type='data'><media-sharing xmlns='urn:xmpp:sims:1'>"
			.. "<file xmlns='urn:xmpp:jingle:apps:file-transfer:5'><name>theirs.jpg</name></file>"
			.. "<sources><reference xmlns='urn:xmpp:reference:0' type='data' uri='" .. portrait .. "'/></sources>"
			.. "</media-sharing></reference>";
		local m = through_plugin(oob(photo) .. their_sfs .. oob(portrait) .. their_sims,
			{ [photo] = photo_result(), [portrait] = photo_result({ name = "portrait.jpg" }) });
		local shares = top_level(m, "file-sharing", ns.sfs);
		local refs = top_level(m, "reference", ns.reference);
		assert.equal(canonical(stand_ins.parse(their_sfs)), canonical(shares[1]));
		assert.equal(canonical(stand_ins.parse(their_sims)), canonical(refs[1]));
		assert.equal(2, #shares); -- theirs for the photo, ours for the portrait
		assert.equal("s1", shares[1].attr.id);
		assert.equal(portrait, shares[2]:get_child("sources", ns.sfs):get_child("url-data", ns.url_data).attr.target);
		assert.equal(2, #refs); -- theirs for the portrait, ours for the photo
		assert.equal(photo, refs[2].attr.uri);
		assert.same({}, top_level(m, "sources", ns.sfs)); -- two shares: no top-level copy
	end);

	it("still strips a forged contract element and leaves the sender's standard elements", function ()
		local forged = "<metadata xmlns='" .. xmlns_metadata .. "'><bytes>1</bytes></metadata>";
		local m = through_plugin("<x xmlns='jabber:x:oob'><url>" .. photo .. "</url>" .. forged .. "</x>" .. forged,
			{ [photo] = photo_result(nil, { "sha256", "thumbnail", "thumbhash", "blurhash" }) });
		assert.same({}, top_level(m, "metadata", xmlns_metadata));
		local metadata = m:get_child("x", ns.oob):get_child("metadata", xmlns_metadata);
		assert.equal("15690", metadata:get_child_text("bytes"));
	end);

	it("adds only the contract element with media_metadata_formats = { \"metadata\" }", function ()
		local m = through_plugin(oob(photo), { [photo] = photo_result() }, { media_metadata_formats = { "metadata" } });
		assert.equal(2, #m.tags); -- body and oob
		assert.truthy(m:get_child("x", ns.oob):get_child("metadata", xmlns_metadata));
	end);

	it("adds only the file share with media_metadata_formats = \"sfs\" (one entry as a string)", function ()
		local m = through_plugin(oob(photo), { [photo] = photo_result() }, { media_metadata_formats = "sfs" });
		assert.is_nil(m:get_child("x", ns.oob):get_child("metadata", xmlns_metadata));
		assert.equal(1, #top_level(m, "file-sharing", ns.sfs));
		assert.same({}, top_level(m, "reference", ns.reference));
	end);

	describe("check_options of formats (the library, from Lua)", function ()
		local mm = stand_ins.real_library();
		it("defaults to all three, in order", function ()
			assert.same({ "metadata", "sfs", "sims" }, (mm.check_options({})).formats);
		end);
		it("drops an unknown entry alone and reports it with its index", function ()
			local clean, refused = mm.check_options({ formats = { "sims", "jpeg", "metadata" } });
			assert.same({ "metadata", "sims" }, clean.formats); -- in the library's order
			assert.equal(1, #refused);
			assert.same({ "formats", "jpeg", 2 }, { refused[1].name, refused[1].value, refused[1].entry });
		end);
		it("refuses an empty list and uses the default", function ()
			local clean, refused = mm.check_options({ formats = {} });
			assert.same({ "metadata", "sfs", "sims" }, clean.formats);
			assert.equal("formats", refused[1].name);
		end);
		it("logs a dropped entry at load, naming the option and the entry", function ()
			stand_ins.reset();
			package.loaded.media_metadata = stand_ins.native();
			local module = stand_ins.module({ media_metadata_formats = { "sfs", "gif" } });
			stand_ins.load_plugin(module);
			assert.truthy(module:logged("error", "Ignoring \"gif\" in media_metadata_formats"));
		end);
	end);

	it("delivers the message, logged, when a builder fails", function ()
		stand_ins.reset();
		local lib = stand_ins.native();
		package.loaded.media_metadata = lib;
		local module = stand_ins.module();
		function module:require(name)
			local stanzas = stand_ins.require_lib(self, name);
			stanzas.add_elements = function () error("builder bug"); end;
			return stanzas;
		end
		stand_ins.load_plugin(module);
		local room = stand_ins.room("room@conference.example.com");
		room:join(juliet, "juliet");
		stand_ins.send_groupchat(module, room, groupchat(oob(photo)));
		lib.pools[1]:complete(photo, photo_result());
		stand_ins.server.watchers[1]:onreadable();
		stand_ins.flush();
		assert.equal(1, #room.broadcasts);
		assert.truthy(module:logged("error", "Adding media metadata to message m1 failed, passing it on", "builder bug"));
		assert.is_false(lib.pools[1].closed or false); -- analysis goes on for later messages
	end);

	-- Issue 14, point 6: every element is Lua heap until the room has broadcast and archived
	-- the message. Measured here with the collector stopped: what add_elements allocates.
	it("keeps what the builders allocate per message small (KiB: contract only < 4, all three < 20)", function ()
		local lib = stand_ins.stanza_library();
		local function allocated(enabled)
			local total = 0;
			for _ = 1, 20 do
				local stanza = groupchat(oob(photo));
				local wanted = lib.strip_and_collect(stanza, 4);
				wanted[1].result = photo_result();
				collectgarbage(); collectgarbage("stop");
				local before = collectgarbage("count");
				lib.add_elements(stanza, wanted, enabled);
				total = total + collectgarbage("count") - before;
				collectgarbage("restart");
			end
			return total / 20;
		end
		local contract = allocated({ metadata = true });
		local all = allocated({ metadata = true, sfs = true, sims = true });
		assert.is_true(contract < 4, contract);
		assert.is_true(all < 20, all);
	end);

	describe("field checks", function ()
		local lib = stand_ins.stanza_library();
		local hostile = {
			"../../x", "a/b", "a\\b", "nul\0.jpg", "tab\t.jpg", "del\127.jpg", "c1\194\133.jpg",
			"\226\128\174gpj.exe", "rlm\226\128\143.jpg", "isolate\226\129\166.jpg", "alm\216\156.jpg",
			"", ".", "..", " padded.jpg", "padded.jpg ", ("x"):rep(10240), "bad\255utf8.jpg",
		};
		for _, name in ipairs(hostile) do
			it(("never writes the name %q"):format(name:sub(1, 40)), function ()
				local fields = lib.fields_of(photo_result({ name = name }));
				assert.is_nil(fields.name);
				local share = lib.file_share(photo, fields);
				assert.is_nil(share:get_child("file", ns.file_metadata):get_child("name"));
			end);
		end

		it("keeps a safe UTF-8 name of 255 bytes", function ()
			local name = ("é"):rep(125) .. ".jpg"; -- 254 bytes
			assert.equal(name, lib.fields_of(photo_result({ name = name })).name);
		end);

		it("checks hashes, base64, dates and numbers before they go into a stanza", function ()
			local fields = lib.fields_of(photo_result({
				sha256 = "not base64!", thumbhash = "abc", thumbnail = "a<b>", thumbnail_width = 0,
				date = "Tue, 15 Nov 1994 08:12:31 GMT", width = 2.5, bytes = -1, type = "image/jpeg\r\nX: y",
			}));
			assert.same({ height = "3024", blurhash = blurhash, name = "photo.jpg", thumbnail_height = "6" }, fields);
			assert.is_nil(lib.file_share(photo, fields)); -- no hash, no share
		end);

		it("writes the length as <length> in ms for Dino and an ISO 8601 duration for Cheogram", function ()
			local fields = lib.fields_of(photo_result({ length = 61005 }));
			local share = lib.file_share(photo, fields);
			assert.equal("61005", share:get_child("file", ns.file_metadata):get_child_text("length"));
			local sims = lib.sims_reference(photo, fields);
			local file = sims:get_child("media-sharing", ns.sims):get_child("file", "urn:xmpp:jingle:apps:file-transfer:5");
			assert.equal("PT61.005S", file:get_child_text("duration", ns.schema));
		end);

		it("writes <length> last in the contract element, after <blurhash>", function ()
			local metadata = lib.metadata_element(lib.fields_of(photo_result({ length = 4200 })));
			local names = {};
			for child in metadata:childtags() do names[#names+1] = child.name; end
			assert.same({ "bytes", "type", "width", "height", "blurhash", "length" }, names);
			assert.equal("4200", metadata:get_child_text("length"));
			-- A voice note: no picture, only its size, type and duration.
			local voice = lib.metadata_element(lib.fields_of({ bytes = 20000, type = "audio/mp4", length = 4200 }));
			assert.equal("4200", voice:get_child_text("length"));
			assert.is_nil(voice:get_child("width"));
		end);
	end);
end);
