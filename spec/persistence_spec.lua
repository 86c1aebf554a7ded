-- busted specs for what mod_muc_media_metadata keeps and where it reads from: results in
-- Prosody's storage (module:open_store), URLs of this server's own mod_http_file_share read
-- from disk (no fetch), and the admin shell commands. Stand-ins as in plugin_spec.lua.

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".";
package.path = ("%s/helpers/?.lua;%s"):format(spec_dir, package.path);
local stand_ins = require "stand_ins";
local sha256 = require "util.hashes".sha256;

local xmlns_metadata = "xmpp:prosody.im/protocol/media-metadata#0";
local photo = "https://media.example.net/abc/photo.jpg";
local juliet = "juliet@example.com/balcony";

local function load(config)
	package.loaded.media_metadata = stand_ins.native();
	local module = stand_ins.module(config);
	stand_ins.load_plugin(module);
	local lib = package.loaded.media_metadata;
	return module, lib.pools[#lib.pools];
end

local function new_room()
	local room = stand_ins.room("room@conference.example.com");
	room:join(juliet, "juliet");
	return room;
end

local function send(module, room, url)
	local stanza = stand_ins.parse(("<message xmlns='jabber:client' type='groupchat' id='m1'"
		.. " to='room@conference.example.com' from='%s'><body>look</body>"
		.. "<x xmlns='jabber:x:oob'><url>%s</url></x></message>"):format(juliet, url));
	return stand_ins.send_groupchat(module, room, stanza), stanza;
end

local function wake()
	stand_ins.server.watchers[#stand_ins.server.watchers]:onreadable();
	stand_ins.flush();
end

local function bytes_of(stanza)
	local x = stanza:get_child("x", "jabber:x:oob");
	local m = x and x:get_child("metadata", xmlns_metadata);
	return m and m:get_child_text("bytes");
end

local result = { bytes = 15690; type = "image/jpeg"; width = 40; height = 30; blurhash = "LEHV6nWB2yk8pyo0adR*.7kCMdnj";
	name = "photo.jpg"; sha256 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" };

local function stored_entry(key)
	return stand_ins.stores.media_metadata[sha256(key, true)];
end

describe("results in Prosody's storage", function ()
	before_each(function ()
		stand_ins.reset();
		prosody.hosts["upload.example.com"] = nil;
	end);

	it("survive a reload: the URL is not analysed again, and the metadata comes from the store", function ()
		local module, pool = load();
		send(module, new_room(), photo);
		pool:complete(photo, result);
		wake();
		local entry = stored_entry(photo);
		assert.equal(photo, entry.key);
		assert.equal(15690, entry.result.bytes);
		module.unload();

		module, pool = load(); -- the same stores: a reload or restart
		local room = new_room();
		local state, stanza = send(module, room, photo);
		assert.is_true(state.done);
		assert.same({}, pool.submitted, "answered from the store");
		assert.equal(1, #room.broadcasts, "and sent on at once");
		assert.equal("15690", bytes_of(stanza));
		assert.truthy(module:logged("debug", photo, "from the results store"));
		assert.equal(1, module.metrics.store.values["hit"]);
	end);

	it("keep every field the library gives (a duration, animation, thumbnails)", function ()
		local full = { bytes = 1; type = "video/mp4"; width = 2; height = 3; blurhash = "LEHV6nWB2yk8pyo0adR*.7kCMdnj";
			name = "a.mp4"; date = "2026-12-03T07:00:00Z"; sha256 = result.sha256; thumbhash = "1QcSHQRnh493V4dIh4eXh1h4kJUI";
			thumbnail = "iVBORw0KGgo="; thumbnail_width = 8; thumbnail_height = 6; length = 5123; animated = true };
		local module, pool = load();
		send(module, new_room(), photo);
		pool:complete(photo, full);
		wake();
		assert.same(full, stored_entry(photo).result);
	end);

	it("expire after cache_ttl", function ()
		local module, pool = load({ media_metadata_cache_ttl = 60 });
		send(module, new_room(), photo);
		pool:complete(photo, result);
		wake();
		stored_entry(photo).at = os.time() - 61;
		module.unload();
		module, pool = load({ media_metadata_cache_ttl = 60 });
		send(module, new_room(), photo);
		assert.equal(1, #pool.submitted, "expired: analysed again");
		assert.is_nil(stored_entry(photo), "and the expired entry is gone");
		assert.equal(1, module.metrics.store.values["expired"]);
	end);

	it("with an ETag or Last-Modified, are reused only once the server answers 304 to a conditional GET", function ()
		local module, pool = load();
		send(module, new_room(), photo);
		local tagged = { etag = '"v1"'; last_modified = "Tue, 01 Dec 2026 10:00:00 GMT" };
		for k, v in pairs(result) do tagged[k] = v; end
		pool:complete(photo, tagged);
		wake();
		assert.equal('"v1"', stored_entry(photo).result.etag);
		module.unload();

		module, pool = load();
		local room = new_room();
		local _, stanza = send(module, room, photo);
		assert.equal(0, #room.broadcasts, "held while the server is asked");
		assert.same({ { id = 101; url = "if-changed " .. photo; since = { etag = '"v1"';
			last_modified = "Tue, 01 Dec 2026 10:00:00 GMT" } } }, pool.submitted);
		pool:complete("if-changed " .. photo, { unchanged = true });
		wake();
		assert.equal(1, #room.broadcasts);
		assert.equal("15690", bytes_of(stanza), "the stored result");
		assert.equal(1, module.metrics.store.values["unchanged"]);

		-- Changed: the new result goes out and replaces the stored one.
		room = new_room();
		pool.submitted = {};
		_, stanza = send(module, room, photo);
		pool:complete("if-changed " .. photo, { bytes = 999; type = "image/png"; etag = '"v2"' });
		wake();
		assert.equal("999", bytes_of(stanza));
		assert.equal('"v2"', stored_entry(photo).result.etag);
		assert.equal(1, module.metrics.store.values["changed"]);
	end);

	it("keep no failure and no half-decoded picture", function ()
		local module, pool = load();
		send(module, new_room(), photo);
		pool:complete(photo, { bytes = 10, type = "image/png", error_kind = "undecodable" });
		wake();
		send(module, new_room(), "https://media.example.net/missing.png");
		pool:fail("https://media.example.net/missing.png", "HTTP 404", "http_status");
		wake();
		assert.same({}, stand_ins.stores.media_metadata);
	end);

	it("ignore and log a corrupt or foreign entry, and never put it in a stanza", function ()
		local bad = {
			"a string";
			{ v = 1; key = "https://other.example/x.png"; at = os.time(); result = { bytes = 1 } }; -- another URL's
			{ v = 1; key = photo; at = os.time(); result = { bytes = "lots" } };
			{ v = 1; key = photo; at = os.time(); result = { bytes = 1; blurhash = "<evil/>" } };
			{ v = 1; key = photo; at = os.time(); result = { bytes = 1; script = "x" } };
			{ v = 99; key = photo; at = os.time(); result = { bytes = 1 } };
			{ v = 1; key = photo; at = "now"; result = { bytes = 1 } };
		};
		for i, entry in ipairs(bad) do
			stand_ins.reset();
			stand_ins.stores.media_metadata = { [sha256(photo, true)] = entry };
			local module, pool = load();
			local _, stanza = send(module, new_room(), photo);
			assert.equal(1, #pool.submitted, ("entry %d was trusted"):format(i));
			assert.truthy(module:logged("warn", "Ignoring the stored result for " .. photo), ("entry %d: not logged"):format(i));
			pool:complete(photo, { bytes = 7 });
			wake();
			assert.equal("7", bytes_of(stanza));
			assert.equal(7, stored_entry(photo).result.bytes, "replaced by the new result");
		end
	end);

	it("when the store fails: analyse without it, say so once, and messages still flow", function ()
		stand_ins.store_error = "database is down";
		local module, pool = load();
		for i = 1, 3 do
			local url = photo .. "?" .. i;
			local _, stanza = send(module, new_room(), url);
			pool:complete(url, result);
			wake();
			assert.equal("15690", bytes_of(stanza), "message " .. i);
		end
		local _, all = module:logged("warn", "The results store failed", "database is down", "without persistence");
		assert.equal(1, #all);
	end);
end);

describe("URLs of this server's own mod_http_file_share", function ()
	local records, fetched_config;
	local upload_base = "https://upload.example.com:5281/file_share";

	-- An http_file_share component on upload.example.com, as modulemanager has it.
	local function upload_component(config)
		fetched_config = config or {};
		records = {};
		local mod = {
			host = "upload.example.com";
			get_option_string = function (_, name) return fetched_config[name]; end;
			get_option_number = function (_, name, default) return fetched_config[name] or default; end;
			http_url = function () return upload_base; end;
			open_store = function (_, name, kind)
				assert.equal("uploads", name);
				assert.equal("archive", kind);
				return { get = function (_, user, key)
					assert.is_nil(user);
					local r = records[key];
					if not r then return nil, "item-not-found"; end
					return { attr = r.attr }, r.when, nil;
				end };
			end;
		};
		prosody.hosts["upload.example.com"] = { modules = { http_file_share = { module = mod } } };
	end

	local function upload(slot, when)
		records[slot] = { when = when or os.time(); attr = { filename = "holiday photo.jpg"; size = "15690";
			["content-type"] = "image/jpeg" } };
	end

	before_each(function ()
		stand_ins.reset();
		upload_component();
	end);
	after_each(function ()
		prosody.hosts["upload.example.com"] = nil;
	end);

	it("are read from the slot's file with the upload record's name, type and date, not fetched", function ()
		local module, pool = load();
		local when = os.time() - 3600;
		upload("kWj3h-Zq_1", when);
		local url = upload_base .. "/kWj3h-Zq_1/holiday%20photo.jpg";
		local _, stanza = send(module, new_room(), url);
		assert.equal(1, #pool.submitted);
		local job = pool.submitted[1];
		assert.truthy(job.url:find("^file:.*/upload%%2eexample%%2ecom/http_file_share/kWj3h%%2dZq%%5f1%.bin$"), job.url);
		assert.same({ name = "holiday photo.jpg"; type = "image/jpeg"; date = os.date("!%Y-%m-%dT%H:%M:%SZ", when) }, job.record);
		pool:complete(job.url, result);
		wake();
		assert.equal("15690", bytes_of(stanza));
		assert.equal(15690, stored_entry("upload upload.example.com kWj3h-Zq_1").result.bytes, "stored by slot");
		-- the same slot by its other URL forms (default port left out, another name, upper-case host)
		module.unload();
		module, pool = load();
		upload_base = "https://upload.example.com/file_share";
		upload_component();
		upload("kWj3h-Zq_1", when);
		_, stanza = send(module, new_room(), "https://UPLOAD.example.com:443/file_share/kWj3h-Zq_1/x.jpg");
		assert.same({}, pool.submitted);
		assert.equal("15690", bytes_of(stanza));
		upload_base = "https://upload.example.com:5281/file_share";
	end);

	it("are matched against http_file_share_base_url when it is set", function ()
		upload_component({ http_file_share_base_url = "https://files.example.org/u/" });
		upload("slot1");
		local module, pool = load();
		send(module, new_room(), "https://files.example.org/u/slot1/a.jpg");
		assert.truthy(pool.submitted[1].url:find("^file:"));
		send(module, new_room(), upload_base .. "/slot1/a.jpg");
		assert.equal(upload_base .. "/slot1/a.jpg", pool.submitted[2].url, "not the upload's URL any more: fetched");
	end);

	it("give no metadata and no fetch for a missing, expired or bad slot, with a debug line", function ()
		upload("old", os.time() - 8 * 86400); -- past the default week
		local module, pool = load();
		local cases = {
			{ "/missing/a.jpg", "no upload missing" };
			{ "/old/a.jpg", "has expired" };
			{ "/../../../etc/passwd", "is not a slot" };
			{ "/%2e%2e/%2e%2e/etc/passwd", "is not a slot" };
			{ "/%2Fetc%2Fpasswd/x", "is not a slot" };
			{ "//etc/passwd", "is not a slot" };
			{ "/a%00b/x", "is not a slot" };
			{ "/" .. ("a"):rep(65) .. "/x", "is not a slot" };
		};
		for _, case in ipairs(cases) do
			local room = new_room();
			local state, stanza = send(module, room, upload_base .. case[1]);
			assert.is_true(state.done);
			assert.equal(1, #room.broadcasts, case[1]);
			assert.is_nil(bytes_of(stanza));
			assert.truthy(module:logged("debug", "Not analysing", case[2]), case[1]);
		end
		assert.same({}, pool.submitted, "nothing read, nothing fetched");
	end);

	it("are found when the upload component is loaded after the MUC", function ()
		prosody.hosts["upload.example.com"] = nil;
		local module, pool = load();
		upload_component();
		upload("late");
		send(module, new_room(), upload_base .. "/late/a.jpg");
		assert.truthy(pool.submitted[1].url:find("^file:"));
	end);
end);

describe("admin shell commands", function ()
	before_each(function ()
		stand_ins.reset();
	end);

	local function command(module, name)
		for _, item in ipairs(module.items["shell-command"] or {}) do
			if item.name == name then return item; end
		end
	end

	it("analyse one URL as the module would, and show the counters", function ()
		local module, pool = load();
		local analyze, counters = command(module, "analyze"), command(module, "counters");
		assert.equal("media_metadata", analyze.section);
		local _, not_here = analyze.handler({}, "elsewhere.example.com", photo);
		assert.equal("mod_muc_media_metadata is not loaded on elsewhere.example.com", not_here);
		local answer;
		analyze.handler({}, "conference.example.com", photo):next(function (text) answer = text; end);
		assert.equal(photo, pool.submitted[1].url);
		pool:complete(photo, result);
		wake();
		assert.truthy(answer:find("bytes = 15690", 1, true), answer);
		assert.truthy(answer:find("(fetched)", 1, true), answer);
		-- the store has it now
		analyze.handler({}, "conference.example.com", photo):next(function (text) answer = text; end);
		assert.truthy(answer:find("from the results store", 1, true), answer);
		local failure;
		analyze.handler({}, "conference.example.com", "https://x.example/404"):next(nil, function (e) failure = e; end);
		pool:fail("https://x.example/404", "HTTP 404 from https://x.example/404", "http_status");
		wake();
		assert.equal("analysis failed (http_status): HTTP 404 from https://x.example/404", failure);
		send(module, new_room(), photo);
		local ok, text = counters.handler({}, "conference.example.com");
		assert.is_true(ok);
		assert.truthy(text:find("urls metadata: 1", 1, true), text);
		assert.truthy(text:find("store hit: 2", 1, true), text);
		assert.truthy(text:find("store stored: 1", 1, true), text);
		assert.truthy(text:find("results store: in use", 1, true), text);
	end);

	it("are given again to a mod_admin_shell loaded after the module (it only looks at global modules)", function ()
		local module = load();
		assert.equal(2, #module.items["shell-command"]);
		module.global_events.fire_event("module-loaded", { module = "admin_shell"; host = "*" });
		assert.equal(4, #module.items["shell-command"]);
		module.global_events.fire_event("module-loaded", { module = "roster"; host = "*" });
		assert.equal(4, #module.items["shell-command"]);
	end);
end);
