-- busted specs for lua/mod_muc_media_metadata.lua, with a stand-in module object and a
-- stand-in native pool (spec/helpers/stand_ins.lua). Run from the repository root:
--   busted --lua=lua5.4 spec/plugin_spec.lua

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".";
package.path = ("%s/helpers/?.lua;%s"):format(spec_dir, package.path);
local stand_ins = require "stand_ins";
local st = require "util.stanza";
local serialize = require "util.serialization".serialize;

local xmlns_oob = "jabber:x:oob";
local xmlns_metadata = "xmpp:prosody.im/protocol/media-metadata#0";

local photo = "https://upload.example.net/abc/photo.jpg";

-- Loads the plugin with `config` and a stand-in library; returns the module, its pool and
-- its muc-occupant-groupchat handler.
local function load(config, native_settings)
	local lib = stand_ins.native(native_settings);
	package.loaded.media_metadata = lib;
	local module = stand_ins.module(config);
	stand_ins.load_plugin(module);
	local hook = assert(module:hook_for("muc-occupant-groupchat"), "hook not registered");
	return module, lib.pools[1], hook.handler;
end

local function groupchat(inner)
	return stand_ins.parse(("<message xmlns='jabber:client' type='groupchat' id='m1'"
		.. " to='room@conference.example.com' from='juliet@example.com/balcony'>"
		.. "<body>look</body>%s</message>"):format(inner or ""));
end

local function oob(url, extra)
	return ("<x xmlns='jabber:x:oob'><url>%s</url>%s</x>"):format(url, extra or "");
end

local forged = "<metadata xmlns='" .. xmlns_metadata .. "'><bytes>1</bytes><width>1</width></metadata>";

local function event_for(stanza)
	return { stanza = stanza, room = { jid = "room@conference.example.com" }, occupant = { nick = "room@conference.example.com/juliet", role = "participant" } };
end

local function metadata_of(oob_element)
	return oob_element:get_child("metadata", xmlns_metadata);
end

local function oobs_of(stanza)
	local list = {};
	for x in stanza:childtags("x", xmlns_oob) do table.insert(list, x); end
	return list;
end

-- Delivers what the pool has done the way the event loop does: the fd is readable.
local function wake()
	local watcher = stand_ins.server.watchers[1];
	watcher:onreadable();
	stand_ins.flush();
end

describe("mod_muc_media_metadata", function ()
	before_each(function ()
		stand_ins.reset();
		package.loaded.media_metadata = nil;
	end);

	it("hooks muc-occupant-groupchat below the role check (50) and above core MUC's clean-up (0)", function ()
		local module = load();
		local hook = module:hook_for("muc-occupant-groupchat");
		assert.is_true(hook.priority < 50);
		assert.is_true(hook.priority > 0);
	end);

	it("starts the pool with the defaults and watches its fd", function ()
		local module, pool = load();
		assert.same({
			threads = 2; queue_length = 64; connect_timeout = 3; timeout = 10; deadline = 5;
			max_bytes = 32 * 1024 * 1024; max_pixels = 50000000; max_redirects = 3; max_urls = 4;
			blurhash_components = { 4, 3 }; allow_private = false;
			allow_hosts = {}; deny_hosts = {}; cache_size = 256; cache_ttl = 3600;
			user_agent = "mod_muc_media_metadata/0.1.0 (Prosody XMPP server)";
			formats = { "metadata", "sfs", "sims" };
		}, pool.options);
		assert.equal(42, stand_ins.server.watchers[1].fd);
		assert.truthy(module:logged("info", "9.8.7-stand-in", "2 threads", "private addresses refused",
			"32 MiB", "50 Mpx", "5s per message"));
	end);

	it("passes configured values to the pool", function ()
		local _, pool = load({
			media_metadata_threads = 4; media_metadata_queue_length = 8;
			media_metadata_connect_timeout = 1.5; media_metadata_timeout = 20;
			media_metadata_max_bytes = 1024; media_metadata_max_pixels = 1000;
			media_metadata_max_redirects = 0; media_metadata_blurhash_components = { 9, 1 };
			media_metadata_allow_private = true;
			media_metadata_allow_hosts = { "media.intranet.example", ".lan" };
			media_metadata_deny_hosts = { "*.tracker.example" };
			media_metadata_cache_size = 0; media_metadata_cache_ttl = 60;
			media_metadata_user_agent = "ExampleBot/1.0";
			media_metadata_formats = { "sims" };
		});
		assert.same({
			threads = 4; queue_length = 8; connect_timeout = 1.5; timeout = 20;
			max_bytes = 1024; max_pixels = 1000; max_redirects = 0; deadline = 5; max_urls = 4;
			blurhash_components = { 9, 1 }; allow_private = true;
			allow_hosts = { "media.intranet.example", ".lan" }; deny_hosts = { "*.tracker.example" };
			cache_size = 0; cache_ttl = 60; user_agent = "ExampleBot/1.0";
			formats = { "sims" };
		}, pool.options);
	end);

	it("logs bad option values, naming option and value, and uses the defaults", function ()
		local module, pool = load({
			media_metadata_threads = -1;
			media_metadata_queue_length = 2.5;
			media_metadata_deadline = "soon";
			media_metadata_timeout = 0;
			media_metadata_max_bytes = "lots";
			media_metadata_max_urls = 100;
			media_metadata_blurhash_components = { 4, 12 };
			media_metadata_allow_private = "maybe";
			media_metadata_deny_hosts = { "good.example", "bad host/" };
			media_metadata_cache_ttl = -5;
			media_metadata_user_agent = "Evil\r\nX-Injected: 1";
		});
		local o = pool.options;
		assert.equal(2, o.threads);
		assert.equal(64, o.queue_length);
		assert.equal(10, o.timeout);
		assert.equal(32 * 1024 * 1024, o.max_bytes);
		assert.same({ 4, 3 }, o.blurhash_components);
		assert.equal(false, o.allow_private);
		assert.same({ "good.example" }, o.deny_hosts);
		assert.equal(3600, o.cache_ttl);
		assert.equal("mod_muc_media_metadata/0.1.0 (Prosody XMPP server)", o.user_agent);
		assert.truthy(module:logged("error", "media_metadata_threads = -1", "default, 2"));
		assert.truthy(module:logged("error", "media_metadata_queue_length = 2.5", "default, 64"));
		assert.truthy(module:logged("error", "media_metadata_deadline = \"soon\"", "default, 5"));
		assert.truthy(module:logged("error", "media_metadata_timeout = 0", "default, 10"));
		assert.truthy(module:logged("error", "media_metadata_max_bytes = \"lots\""));
		assert.truthy(module:logged("error", "media_metadata_max_urls = 100", "default, 4"));
		assert.truthy(module:logged("error", "media_metadata_blurhash_components = { 4; 12 }"));
		assert.truthy(module:logged("error", "media_metadata_allow_private = \"maybe\""));
		assert.truthy(module:logged("error", "\"bad host/\"", "media_metadata_deny_hosts"));
		assert.truthy(module:logged("error", "media_metadata_cache_ttl = -5"));
		assert.truthy(module:logged("error", "media_metadata_user_agent = \"Evil\\r\\nX-Injected: 1\""));

		-- The defaults for the Lua side's own options are in force too.
		local handler = module:hook_for("muc-occupant-groupchat").handler;
		local stanza = groupchat(oob("https://a.example/1") .. oob("https://a.example/2")
			.. oob("https://a.example/3") .. oob("https://a.example/4") .. oob("https://a.example/5"));
		stand_ins.run_in_runner(handler, event_for(stanza));
		assert.equal(4, #pool.submitted); -- media_metadata_max_urls: 4
		assert.equal(5, module.timers[1].delay); -- media_metadata_deadline: 5
	end);

	it("reads periods with get_option_period where Prosody has it (13)", function ()
		package.loaded.media_metadata = stand_ins.native();
		local module = stand_ins.module({ media_metadata_deadline = "2 seconds" }, {
			get_option_period = function (self, name, default)
				local value = self:get_option(name, default);
				if type(value) == "string" then
					return tonumber(value:match("^(%d+) seconds?$"));
				end
				return value;
			end;
		});
		stand_ins.load_plugin(module);
		local handler = module:hook_for("muc-occupant-groupchat").handler;
		stand_ins.run_in_runner(handler, event_for(groupchat(oob(photo))));
		assert.equal(2, module.timers[1].delay);
		assert.is_nil(module:logged("error", "media_metadata_deadline"));
	end);

	describe("options against the real library, which owns their ranges", function ()
		-- option, minimum, maximum, one below the minimum, one above the maximum (nil: none)
		local ranges = {
			{ "threads", 1, 64, 0, 65 };
			{ "queue_length", 1, 65536, 0, 65537 };
			{ "deadline", 0.001, 60, 0, 60.001 };
			{ "connect_timeout", 0.001, 60, 0, 60.5 };
			{ "timeout", 0.001, 600, 0, 601 };
			{ "max_bytes", 1, math.maxinteger, 0, nil };
			{ "max_pixels", 1, math.maxinteger, 0, nil };
			{ "max_redirects", 0, 20, -1, 21 };
			{ "max_urls", 1, 32, 0, 33 };
			{ "blurhash_components", { 1, 1 }, { 9, 9 }, { 0, 1 }, { 9, 10 } };
			{ "cache_size", 0, 1048576, -1, 1048577 };
			{ "cache_ttl", 0.001, 30 * 86400, 0, 30 * 86400 + 1 };
		};

		-- Loads the real plugin with the real library and `config`; returns the module.
		local function load_real(config, fields)
			stand_ins.real_library();
			local module = stand_ins.module(config, fields);
			local watchers = #stand_ins.server.watchers;
			stand_ins.load_plugin(module);
			assert(module:hook_for("muc-occupant-groupchat"), "the module did not load");
			assert.equal(watchers + 1, #stand_ins.server.watchers); -- its pool started
			module.unload();
			return module;
		end

		for _, r in ipairs(ranges) do
			local name, min, max, below, above = r[1], r[2], r[3], r[4], r[5];
			it(("takes %s at its minimum and maximum and refuses one past each"):format(name), function ()
				for _, value in ipairs({ min, max }) do
					local module = load_real({ ["media_metadata_" .. name] = value });
					assert.is_nil(module:logged("error"), ("%s = %s: %s"):format(name, serialize(value), tostring(module:logged("error"))));
				end
				for _, value in pairs({ below, above }) do
					local module = load_real({ ["media_metadata_" .. name] = value });
					assert.truthy(module:logged("error", "Ignoring media_metadata_" .. name .. " = ", "using the default"),
						("%s = %s was not refused"):format(name, serialize(value)));
				end
			end);
		end

		it("takes a fractional number of seconds, and the largest cache and TTL the README gives", function ()
			local module = load_real({ media_metadata_cache_ttl = 1.5 * 86400, media_metadata_cache_size = 1048576,
				media_metadata_deadline = 2.5 });
			assert.is_nil(module:logged("error"));
		end);

		it("refuses a period on 0.12 (no get_option_period) and an ambiguous one on 13, naming option and default", function ()
			local module = load_real({ media_metadata_deadline = "5 seconds" });
			assert.truthy(module:logged("error", "media_metadata_deadline = \"5 seconds\"", "using the default, 5"));
			local period = function (self, name) return self:get_option(name) == "1.5 days" and 432000 or nil; end;
			module = load_real({ media_metadata_cache_ttl = "1.5 days" }, { get_option_period = period });
			assert.truthy(module:logged("error", "media_metadata_cache_ttl = \"1.5 days\"", "using the default, 3600"));
		end);

		it("says what User-Agent is sent instead of a bad one", function ()
			local module = load_real({ media_metadata_user_agent = "Evil\r\nX: 1" });
			assert.truthy(module:logged("error", "media_metadata_user_agent", "using the default, \"mod_muc_media_metadata/"));
		end);

		it("warns of a misspelt option, naming the nearest known one", function ()
			local configmanager = require "core.configmanager";
			configmanager.set("conference.example.com", "media_metadata_threds", 4);
			local ok, module = pcall(load_real, {});
			configmanager.set("conference.example.com", "media_metadata_threds", nil);
			assert(ok, module);
			assert.truthy(module:logged("warn", "media_metadata_threds", "did you mean media_metadata_threads?"));
		end);
	end);

	-- The room of every test below, with juliet (the sender of groupchat()) in it.
	local juliet = "juliet@example.com/balcony";
	local function new_room()
		local room = stand_ins.room("room@conference.example.com");
		room:join(juliet, "juliet");
		return room;
	end

	-- juliet's message with `inner` through the room; returns the runner's state.
	local function send(module, room, inner, body)
		local stanza = groupchat(inner);
		if body then
			stanza:get_child("body"):text(" " .. body);
		end
		return stand_ins.send_groupchat(module, room, stanza), stanza;
	end

	it("holds the message, not the sender's runner, and adds the result in the contract's order", function ()
		local module, pool = load();
		local room = new_room();
		local state, stanza = send(module, room, oob(photo));
		assert.same({ { id = pool.submitted[1].id, url = photo } }, pool.submitted);
		assert.is_true(state.done); -- the session goes on with its next stanza at once
		assert.same({}, room.broadcasts); -- the message waits for its result

		pool:complete(photo, {
			blurhash = "LEHV6nWB2yk8pyo0adR*.7kCMdnj", height = 3024.0, width = 4032,
			type = "image/jpeg", bytes = 15690.0, colour = "red",
		});
		wake();
		assert.equal(1, #room.broadcasts);
		assert.equal("room@conference.example.com/juliet", room.broadcasts[1].from);
		assert.equal(juliet, stanza.attr.from); -- restored, as handle_groupchat_to_room does
		assert.equal("<x xmlns='jabber:x:oob'><url>" .. photo .. "</url>"
			.. "<metadata xmlns='" .. xmlns_metadata .. "'><bytes>15690</bytes><type>image/jpeg</type>"
			.. "<width>4032</width><height>3024</height><blurhash>LEHV6nWB2yk8pyo0adR*.7kCMdnj</blurhash>"
			.. "</metadata></x>", tostring(oobs_of(stanza)[1]));
		assert.is_true(module.timers[1].stopped);
		assert.equal(1, module.metrics.urls.values["metadata,"]);
		assert.equal(1, module.metrics.held.values[""]);
	end);

	it("adds what is known of a picture that could not be decoded, and counts why", function ()
		local module, pool = load();
		local _, stanza = send(module, new_room(), oob(photo));
		pool:complete(photo, { bytes = 10, type = "image/png", note = "cannot decode image/png: truncated: no blurhash",
			error_kind = "undecodable" });
		wake();
		assert.equal("<metadata xmlns='" .. xmlns_metadata .. "'><bytes>10</bytes><type>image/png</type></metadata>",
			tostring(metadata_of(oobs_of(stanza)[1])));
		assert.equal(1, module.metrics.urls.values["metadata,undecodable"]);
		assert.truthy(module:logged("debug", photo, "cannot decode image/png"));
	end);

	it("leaves out fields that are missing or not valid, and adds nothing when none is left", function ()
		local module, pool = load();
		local room = new_room();
		-- The junk comes first: a value util.stanza refuses must not cost the next oob its metadata.
		local _, stanza = send(module, room, oob("https://a.example/junk") .. oob("https://a.example/partial"));
		pool:complete("https://a.example/junk", { type = "text/html\1", blurhash = "no spaces allowed", width = 0, bytes = "12" });
		pool:complete("https://a.example/partial", { type = "video/mp4", width = -1, height = 2.5, bytes = 99 });
		wake();
		assert.equal(1, #room.broadcasts);
		local junk, partial = oobs_of(stanza)[1], oobs_of(stanza)[2];
		assert.is_nil(metadata_of(junk));
		assert.equal("<metadata xmlns='" .. xmlns_metadata .. "'><bytes>99</bytes><type>video/mp4</type></metadata>",
			tostring(metadata_of(partial)));
	end);

	it("strips forged metadata from oob and the top level when there is no URL, and does not hold", function ()
		local module, pool = load();
		local room = new_room();
		local _, stanza = send(module, room, "<x xmlns='jabber:x:oob'>" .. forged .. "</x>" .. forged
			.. "<metadata xmlns='urn:example:other'/>");
		assert.equal(1, #room.broadcasts); -- at once
		assert.equal(0, #pool.submitted);
		assert.equal(0, #module.timers);
		assert.is_nil(stanza:get_child("metadata", xmlns_metadata));
		assert.is_nil(metadata_of(oobs_of(stanza)[1]));
		assert.truthy(stanza:get_child("metadata", "urn:example:other")); -- not ours: kept
		assert.equal("look", stanza:get_child_text("body"));
	end);

	it("strips forged metadata when the analysis fails, and logs the URL and error", function ()
		local module, pool = load();
		local room = new_room();
		local _, stanza = send(module, room, oob(photo, forged) .. forged);
		pool:fail(photo, "refused: 10.0.0.5 is a private address", "refused");
		wake();
		assert.equal(1, #room.broadcasts);
		assert.is_nil(metadata_of(oobs_of(stanza)[1]));
		assert.is_nil(stanza:get_child("metadata", xmlns_metadata));
		assert.truthy(module:logged("debug", photo, "refused: 10.0.0.5 is a private address"));
		assert.equal(1, module.metrics.urls.values["failed,refused"]);
	end);

	it("replaces forged metadata with its own", function ()
		local module, pool = load();
		local _, stanza = send(module, new_room(), oob(photo, forged));
		pool:complete(photo, { width = 640, height = 480 });
		wake();
		local x = oobs_of(stanza)[1];
		local count = 0;
		for _ in x:childtags("metadata", xmlns_metadata) do count = count + 1; end
		assert.equal(1, count);
		assert.equal("640", metadata_of(x):get_child_text("width"));
		assert.is_nil(metadata_of(x):get_child("bytes"));
	end);

	it("does not submit URLs beyond media_metadata_max_urls, and logs it", function ()
		local module, pool = load({ media_metadata_max_urls = 2 });
		local room = new_room();
		local _, stanza = send(module, room, oob("https://a.example/1") .. oob("https://a.example/2")
			.. oob("https://a.example/3"));
		assert.same({ "https://a.example/1", "https://a.example/2" },
			{ pool.submitted[1].url, pool.submitted[2].url });
		assert.equal(2, #pool.submitted);
		assert.truthy(module:logged("debug", "1 more URLs", "media_metadata_max_urls = 2"));
		pool:complete("https://a.example/1", { bytes = 1 });
		wake();
		assert.equal(0, #room.broadcasts); -- one result is not all
		pool:complete("https://a.example/2", { bytes = 2 });
		wake();
		assert.equal(1, #room.broadcasts);
		assert.is_nil(metadata_of(oobs_of(stanza)[3]));
	end);

	it("submits a URL shared twice once and annotates both, and skips schemes it cannot fetch", function ()
		local module, pool = load();
		local room = new_room();
		local _, stanza = send(module, room, oob(photo) .. oob("aesgcm://upload.example.net/x.jpg#key") .. oob(photo));
		assert.equal(1, #pool.submitted);
		pool:complete(photo, { bytes = 5 });
		wake();
		assert.equal(1, #room.broadcasts);
		local x = oobs_of(stanza);
		assert.equal("5", metadata_of(x[1]):get_child_text("bytes"));
		assert.is_nil(metadata_of(x[2]));
		assert.equal("5", metadata_of(x[3]):get_child_text("bytes"));
	end);

	it("passes the message on without metadata when the deadline passes first", function ()
		local module, pool = load({ media_metadata_deadline = 3 });
		local room = new_room();
		local _, stanza = send(module, room, oob(photo) .. oob("https://a.example/slow"));
		assert.equal(1, #module.timers);
		assert.equal(3, module.timers[1].delay);
		pool:complete(photo, { bytes = 7 });
		wake();
		assert.equal(0, #room.broadcasts); -- still waiting for the slow one

		module.timers[1]:fire();
		stand_ins.flush();
		assert.equal(1, #room.broadcasts);
		assert.equal("7", metadata_of(oobs_of(stanza)[1]):get_child_text("bytes"));
		assert.is_nil(metadata_of(oobs_of(stanza)[2]));
		assert.truthy(module:logged("debug", "https://a.example/slow", "3s"));
		assert.equal(1, module.metrics.urls.values["deadline,"]);
		assert.same({ pool:id_of("https://a.example/slow") }, pool.cancelled); -- the worker may stop

		-- The late result is drained and dropped; the message has gone on, once.
		pool:complete("https://a.example/slow", { bytes = 8 });
		wake();
		assert.is_nil(metadata_of(oobs_of(stanza)[2]));
		assert.equal(0, #pool.done);
		assert.truthy(module:logged("debug", "Discarding the result of job"));
		assert.equal(1, #room.broadcasts);
	end);

	it("lets the message go on from the fd callback itself, not a tick later", function ()
		local module, pool = load();
		local room = new_room();
		local _, stanza = send(module, room, oob(photo));
		pool:complete(photo, { bytes = 3 });
		stand_ins.server.watchers[1]:onreadable(); -- no flush: queued ticks have not run
		assert.equal(1, #room.broadcasts);
		assert.equal("3", metadata_of(oobs_of(stanza)[1]):get_child_text("bytes"));
	end);

	it("does nothing for a message without oob or metadata, and allocates nothing", function ()
		local _, pool, handler = load();
		local room = new_room();
		local event = { room = room, stanza = groupchat("<active xmlns='http://jabber.org/protocol/chatstates'/>"),
			from = juliet, occupant = room.occupants[juliet] };
		handler(event);
		collectgarbage("collect");
		collectgarbage("stop");
		local before = collectgarbage("count");
		for _ = 1, 100 do handler(event); end
		local after = collectgarbage("count");
		collectgarbage("restart");
		assert.equal(before, after);
		assert.equal(0, #pool.submitted);
	end);

	describe("order", function ()
		it("a sender's later messages in the same room wait behind the held one, others do not", function ()
			local module, pool = load();
			local room, other_room = new_room(), stand_ins.room("other@conference.example.com");
			other_room:join(juliet, "juliet");
			room:join("romeo@example.com/garden", "romeo");
			send(module, room, oob(photo), "1");
			local state2 = send(module, room, "", "2"); -- plain, from juliet
			send(module, room, oob("https://a.example/fast"), "3");
			local romeo = groupchat(""); -- the same room, another occupant
			romeo.attr.from = "romeo@example.com/garden";
			romeo:get_child("body"):text(" romeo");
			stand_ins.send_groupchat(module, room, romeo);
			send(module, other_room, "", "elsewhere"); -- juliet, another room
			assert.is_true(state2.done);
			assert.same({ "look romeo" }, room:bodies());
			assert.same({ "look elsewhere" }, other_room:bodies());

			pool:complete("https://a.example/fast", { bytes = 1 }); -- 3 is done but stays behind 1
			wake();
			assert.same({ "look romeo" }, room:bodies());
			pool:complete(photo, { bytes = 2 });
			wake();
			assert.same({ "look romeo", "look 1", "look 2", "look 3" }, room:bodies());
			assert.equal("1", metadata_of(oobs_of(room.broadcasts[4].stanza)[1]):get_child_text("bytes"));

			-- The queue is gone with its last message: the next plain one passes at once.
			send(module, room, "", "4");
			assert.equal("look 4", room:bodies()[5]);
		end);

		it("a message behind a held one keeps its own deadline", function ()
			local module, pool = load();
			local room = new_room();
			send(module, room, oob(photo), "1");
			send(module, room, oob("https://a.example/slow"), "2");
			assert.equal(2, #module.timers);
			module.timers[2]:fire(); -- 2's deadline: it is ready, but 1 is not
			assert.same({}, room:bodies());
			pool:complete(photo, { bytes = 2 });
			wake();
			assert.same({ "look 1", "look 2" }, room:bodies());
			assert.equal(1, module.metrics.urls.values["deadline,"]);
		end);
	end);

	describe("after the hold, the message goes on through the rest of the event", function ()
		it("runs each handler below ours once, after the hold, and those above ours once, before it", function ()
			local module, pool = load();
			local room = new_room();
			local calls = {};
			module.events.add_handler("muc-occupant-groupchat", function () table.insert(calls, "role check (50)"); end, 50);
			module.events.add_handler("muc-occupant-groupchat", function () table.insert(calls, "delay strip (0)"); end, 0);
			module.events.add_handler("muc-occupant-groupchat", function () table.insert(calls, "last (-5)"); end, -5);
			send(module, room, oob(photo));
			assert.same({ "role check (50)" }, calls);
			pool:complete(photo, { bytes = 1 });
			wake();
			assert.same({ "role check (50)", "delay strip (0)", "last (-5)" }, calls);
			assert.equal(1, #room.broadcasts);
		end);

		it("is not broadcast when a handler below ours stops it", function ()
			local module, pool = load();
			local room = new_room();
			module.events.add_handler("muc-occupant-groupchat", function () return true; end, 0);
			send(module, room, oob(photo));
			pool:complete(photo, { bytes = 1 });
			wake();
			assert.equal(0, #room.broadcasts);
		end);

		it("may wait in a handler below ours, and later messages still keep their order", function ()
			local module, pool = load();
			local room = new_room();
			local async = require "util.async";
			local go_on;
			module.events.add_handler("muc-occupant-groupchat", function (event)
				if event.stanza:get_child_text("body") == "look 1" then
					local wait, done = async.waiter();
					go_on = done;
					wait();
				end
			end, 0);
			send(module, room, oob(photo), "1");
			send(module, room, "", "2");
			pool:complete(photo, { bytes = 1 });
			wake();
			assert.is_function(go_on); -- 1 is waiting in the handler, 2 behind it
			assert.same({}, room:bodies());
			go_on();
			stand_ins.flush();
			assert.same({ "look 1", "look 2" }, room:bodies());
		end);
	end);

	describe("a sender who is no longer allowed to speak", function ()
		local function removed_presence(module, room, code)
			module.events.fire_event("muc-broadcast-presence", {
				room = room, occupant = room.occupants[juliet],
				x = st.stanza("x", { xmlns = "http://jabber.org/protocol/muc#user" }):tag("status", { code = code }):up(),
			});
			room.occupants[juliet] = nil;
		end

		for _, case in ipairs({
			{ "kicked", function (module, room) removed_presence(module, room, "307"); end };
			{ "banned", function (module, room)
				room.affiliations["juliet@example.com"] = "outcast";
				removed_presence(module, room, "301");
			end };
			{ "lost voice", function (_, room) room.occupants[juliet].role = "visitor"; end };
		}) do
			it(("has no message broadcast when %s during the hold"):format(case[1]), function ()
				local module, pool = load();
				local room = new_room();
				send(module, room, oob(photo), "1");
				send(module, room, "", "2");
				case[2](module, room);
				pool:complete(photo, { bytes = 1 });
				wake();
				assert.same({}, room.broadcasts);
				assert.truthy(module:logged("debug", "Not broadcasting message", case[1]));
			end);
		end

		it("has nothing broadcast in a room destroyed during the hold", function ()
			local module, pool = load();
			local room = new_room();
			send(module, room, oob(photo), "1");
			module.events.fire_event("muc-room-destroyed", { room = room });
			pool:complete(photo, { bytes = 1 });
			wake();
			assert.same({}, room.broadcasts);
			assert.truthy(module:logged("debug", "Not broadcasting message", "the room was destroyed"));
		end);

		it("still has it broadcast, under the nick it was sent with, after leaving of their own accord", function ()
			local module, pool = load();
			local room = new_room();
			send(module, room, oob(photo));
			module.events.fire_event("muc-broadcast-presence", { room = room, occupant = room.occupants[juliet],
				x = st.stanza("x", { xmlns = "http://jabber.org/protocol/muc#user" }) });
			room.occupants[juliet] = nil;
			pool:complete(photo, { bytes = 1 });
			wake();
			assert.equal(1, #room.broadcasts);
			assert.equal("room@conference.example.com/juliet", room.broadcasts[1].from);
		end);
	end);

	it("passes the message on at once without metadata when the queue is full", function ()
		local module, pool = load(nil, { capacity = 0 });
		local room = new_room();
		local _, stanza = send(module, room, oob(photo, forged));
		assert.equal(1, #room.broadcasts);
		assert.equal(0, #module.timers); -- nothing to wait for
		assert.is_nil(metadata_of(oobs_of(stanza)[1]));
		assert.truthy(module:logged("debug", photo, "queue full"));
		assert.equal(0, #pool.submitted);
		assert.equal(1, module.metrics.urls.values["not_queued,queue_full"]);
	end);

	it("analyses outside an async runner too (nothing waits in the handler)", function ()
		local module, pool, handler = load();
		local room = new_room();
		local stanza = groupchat(oob(photo));
		assert.is_true(handler({ room = room, stanza = stanza, from = juliet, occupant = room.occupants[juliet] }));
		pool:complete(photo, { bytes = 4 });
		wake();
		assert.equal(1, #room.broadcasts);
		assert.equal("4", metadata_of(oobs_of(stanza)[1]):get_child_text("bytes"));
	end);

	it("never lets an error escape the hook, and delivers the message", function ()
		local module = load(nil, { submit_error = "boom in submit" });
		local room = new_room();
		local state, stanza = send(module, room, oob(photo, forged));
		assert.is_true(state.done);
		assert.is_nil(state.error);
		assert.equal(1, #room.broadcasts);
		assert.is_nil(metadata_of(oobs_of(stanza)[1]));
		assert.truthy(module:logged("error", "boom in submit"));
	end);

	it("catches a failing drain in the fd callback and stops analysing", function ()
		local module, pool = load(nil, { drain_error = "boom in drain" });
		local room = new_room();
		send(module, room, oob(photo));
		assert.has_no.errors(function () stand_ins.server.watchers[1]:onreadable(); end);
		stand_ins.flush();
		assert.truthy(module:logged("error", "boom in drain"));
		assert.equal(1, #room.broadcasts); -- the held message went on
		assert.same({ "watcher closed", "pool closed" }, stand_ins.events);

		send(module, room, oob(photo, forged));
		assert.equal(2, #room.broadcasts);
		assert.equal(1, #pool.submitted);
	end);

	for _, how in ipairs({ "unload", "server-stopping" }) do
		it(("on %s closes the watcher, then the pool, and sends held messages on in order"):format(how), function ()
			local module, pool = load();
			local room = new_room();
			local _, stanza = send(module, room, oob(photo), "1");
			send(module, room, "", "2");
			assert.same({}, room.broadcasts);
			if how == "unload" then
				assert.is_function(module.unload); -- what Prosody calls on unload
				module.unload();
			else
				module.global_events.fire_event("server-stopping", {});
			end
			stand_ins.flush();
			assert.same({ "watcher closed", "pool closed" }, stand_ins.events);
			assert.is_true(stand_ins.server.watchers[1].closed);
			assert.is_true(pool.closed);
			assert.same({ "look 1", "look 2" }, room:bodies());
			assert.is_nil(metadata_of(oobs_of(stanza)[1]));
		end);
	end

	it("finds its workers gone after a fork it did not see coming, says so, and starts new ones", function ()
		local pid = 1000;
		package.loaded["util.pposix"] = { getpid = function () return pid; end };
		local ok, module, pool = pcall(load);
		package.loaded["util.pposix"] = nil;
		assert(ok, module);
		local room = new_room();
		send(module, room, oob(photo), "1"); -- held on the first pool
		pid = 1001; -- the process forked: the first pool's threads stayed behind
		send(module, room, oob(photo), "2");
		assert.truthy(module:logged("error", "started in process 1000 and this is 1001"));
		local lib = package.loaded.media_metadata;
		assert.equal(2, #lib.pools);
		assert.is_nil(pool.closed); -- not closed: there are no threads to wait for
		assert.same({ "look 1" }, room:bodies()); -- what waited on the old pool went on
		lib.pools[2]:complete(photo, { bytes = 9 });
		stand_ins.server.watchers[2]:onreadable();
		assert.same({ "look 1", "look 2" }, room:bodies());
		assert.equal("9", metadata_of(oobs_of(room.broadcasts[2].stanza)[1]):get_child_text("bytes"));
	end);

	it("starts its workers only once Prosody has started, after it may have forked to daemonize", function ()
		local lib = stand_ins.native();
		package.loaded.media_metadata = lib;
		local module = stand_ins.module();
		local start_time = prosody.start_time;
		prosody.start_time = nil; -- loaded with the server, as at start-up
		local ok, err = pcall(stand_ins.load_plugin, module);
		prosody.start_time = start_time;
		assert(ok, err);
		assert.equal(0, #lib.pools);
		assert.equal(0, #stand_ins.server.watchers);
		local room = new_room();
		send(module, room, oob(photo)); -- before then: passes without analysis
		assert.equal(1, #room.broadcasts);

		module.global_events.fire_event("server-started", {});
		assert.equal(1, #lib.pools);
		assert.equal(1, #stand_ins.server.watchers);
		send(module, room, oob(photo));
		assert.equal(1, #lib.pools[1].submitted);
	end);

	describe("loading the library", function ()
		local function failing_require(name)
			if name == "media_metadata" then
				error("module 'media_metadata' not found", 2);
			end
			return require(name);
		end

		-- package.loadlib stand-in: only `good_path` holds the library.
		local function fake_package(good_path, lib, calls)
			return setmetatable({
				loadlib = function (path, symbol)
					table.insert(calls, { path = path, symbol = symbol });
					if path == good_path then
						return function () return lib; end;
					end
					return nil, path .. ": cannot open shared object file: No such file or directory", "open";
				end;
			}, { __index = package });
		end

		local function load_from(plugin_path, good_path, fields)
			local lib, calls = stand_ins.native(), {};
			local module = stand_ins.module(nil, fields);
			module.path = plugin_path;
			local ok, err = pcall(stand_ins.load_plugin, module, {
				require = failing_require;
				package = fake_package(good_path, lib, calls);
			});
			return ok, err, calls, lib, module;
		end

		it("finds it beside the plugin when require fails", function ()
			local ok, err, calls, lib = load_from("/srv/plugins/mod_muc_media_metadata/mod_muc_media_metadata.lua",
				"/srv/plugins/mod_muc_media_metadata/media_metadata.so");
			assert.is_true(ok, err);
			assert.equal("luaopen_media_metadata", calls[1].symbol);
			assert.equal(1, #lib.pools);
		end);

		it("finds it in the LuaRocks tree the plugin was installed into", function ()
			for _, plugin_path in ipairs({
				"/opt/tree/share/lua/5.4/mod_muc_media_metadata/mod_muc_media_metadata.lua",
				"/opt/tree/share/lua/5.4/mod_muc_media_metadata.lua",
			}) do
				local ok, err, _, lib = load_from(plugin_path, "/opt/tree/lib/lua/5.4/media_metadata.so");
				assert.is_true(ok, err);
				assert.equal(1, #lib.pools);
			end
			-- Prosody sets resource_path (what get_directory() returns) into the rocks tree
			-- for a plugin it installed.
			local ok, err = load_from("/opt/tree/share/lua/5.4/mod_muc_media_metadata.lua",
				"/opt/tree/lib/lua/5.4/media_metadata.so",
				{ resource_path = "/opt/tree/lib/luarocks/rocks-5.4/mod_muc_media_metadata/0.1.0-1" });
			assert.is_true(ok, err);
		end);

		it("names an older library that lacks check_options as the cause", function ()
			local old = { version = "0.0.9", new_pool = function () end };
			package.loaded.media_metadata = old;
			local module = stand_ins.module();
			local ok, err = pcall(stand_ins.load_plugin, module);
			package.loaded.media_metadata = nil;
			assert.is_false(ok);
			assert.truthy(err:find("version 0.0.9) has no new_pool() or check_options()", 1, true), err);
		end);

		it("raises an error naming every path tried when all fail", function ()
			local ok, err, calls = load_from("/opt/tree/share/lua/5.4/mod_muc_media_metadata/mod_muc_media_metadata.lua",
				"/nowhere/media_metadata.so");
			assert.is_false(ok);
			assert.truthy(err:find("module 'media_metadata' not found", 1, true));
			assert.equal(2, #calls);
			for _, call in ipairs(calls) do
				assert.truthy(err:find(call.path, 1, true), call.path);
			end
			assert.truthy(err:find("/opt/tree/share/lua/5.4/mod_muc_media_metadata/media_metadata.so", 1, true));
			assert.truthy(err:find("/opt/tree/lib/lua/5.4/media_metadata.so", 1, true));
			-- The likeliest cause comes first, require's long list of paths last.
			assert.truthy(err:find("^Could not load the media_metadata library: there is no "
				.. "/opt/tree/share/lua/5.4/mod_muc_media_metadata/media_metadata.so %(cargo names it libmedia_metadata.so"), err);
			assert.truthy(err:find("module 'media_metadata' not found[^\n]*$"), err);
		end);

		it("names a library that is there but does not load as the cause", function ()
			local dir = os.tmpname();
			os.remove(dir);
			assert(os.execute(("mkdir -p %q"):format(dir)));
			local so = dir .. "/media_metadata.so";
			assert(io.open(so, "wb")):close();
			local ok, err = load_from(dir .. "/mod_muc_media_metadata.lua", "/nowhere/media_metadata.so");
			os.remove(so);
			os.remove(dir);
			assert.is_false(ok);
			assert.truthy(err:find("^Could not load the media_metadata library: " .. so:gsub("%p", "%%%0")
				.. ": cannot open shared object file"), err);
		end);
	end);
end);
