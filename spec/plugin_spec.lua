-- busted specs for lua/mod_muc_media_metadata.lua, with a stand-in module object and a
-- stand-in native pool (spec/helpers/stand_ins.lua). Run from the repository root:
--   busted --lua=lua5.4 spec/plugin_spec.lua

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".";
package.path = ("%s/helpers/?.lua;%s"):format(spec_dir, package.path);
local stand_ins = require "stand_ins";

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
			threads = 2; queue_length = 64; connect_timeout = 3; timeout = 10;
			max_bytes = 32 * 1024 * 1024; max_pixels = 50000000; max_redirects = 3;
			components_long = 4; components_short = 3; allow_private = false;
			allow_hosts = {}; deny_hosts = {}; cache_size = 256; cache_ttl = 3600;
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
		});
		assert.same({
			threads = 4; queue_length = 8; connect_timeout = 1.5; timeout = 20;
			max_bytes = 1024; max_pixels = 1000; max_redirects = 0;
			components_long = 9; components_short = 1; allow_private = true;
			allow_hosts = { ".lan", "media.intranet.example" }; deny_hosts = { "*.tracker.example" };
			cache_size = 0; cache_ttl = 60; user_agent = "ExampleBot/1.0";
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
		assert.same({ 4, 3 }, { o.components_long, o.components_short });
		assert.equal(false, o.allow_private);
		assert.same({ "good.example" }, o.deny_hosts);
		assert.equal(3600, o.cache_ttl);
		assert.is_nil(o.user_agent);
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

	it("adds the result in the contract's order, only known fields, integers without .0", function ()
		local module, pool, handler = load();
		local stanza = groupchat(oob(photo));
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		assert.same({ { id = pool.submitted[1].id, url = photo } }, pool.submitted);
		assert.is_false(state.done); -- held until the result is in

		pool:complete(photo, {
			blurhash = "LEHV6nWB2yk8pyo0adR*.7kCMdnj", height = 3024.0, width = 4032,
			type = "image/jpeg", bytes = 15690.0, colour = "red",
		});
		wake();
		assert.is_true(state.done);
		assert.is_nil(state.error);
		assert.is_nil(state.returned[1]); -- never true/false: that would stop the message
		assert.equal("<x xmlns='jabber:x:oob'><url>" .. photo .. "</url>"
			.. "<metadata xmlns='" .. xmlns_metadata .. "'><bytes>15690</bytes><type>image/jpeg</type>"
			.. "<width>4032</width><height>3024</height><blurhash>LEHV6nWB2yk8pyo0adR*.7kCMdnj</blurhash>"
			.. "</metadata></x>", tostring(oobs_of(stanza)[1]));
		assert.is_true(module.timers[1].stopped);
		assert.equal(1, module.metrics.urls.values.metadata);
	end);

	it("leaves out fields that are missing or not valid, and adds nothing when none is left", function ()
		local _, pool, handler = load();
		-- The junk comes first: a value util.stanza refuses must not cost the next oob its metadata.
		local stanza = groupchat(oob("https://a.example/junk") .. oob("https://a.example/partial"));
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		pool:complete("https://a.example/junk", { type = "text/html\1", blurhash = "no spaces allowed", width = 0, bytes = "12" });
		pool:complete("https://a.example/partial", { type = "video/mp4", width = -1, height = 2.5, bytes = 99 });
		wake();
		assert.is_true(state.done);
		local junk, partial = oobs_of(stanza)[1], oobs_of(stanza)[2];
		assert.is_nil(metadata_of(junk));
		assert.equal("<metadata xmlns='" .. xmlns_metadata .. "'><bytes>99</bytes><type>video/mp4</type></metadata>",
			tostring(metadata_of(partial)));
	end);

	it("strips forged metadata from oob and the top level when there is no URL", function ()
		local _, pool, handler = load();
		local stanza = groupchat("<x xmlns='jabber:x:oob'>" .. forged .. "</x>" .. forged
			.. "<metadata xmlns='urn:example:other'/>");
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		assert.is_true(state.done);
		assert.equal(0, #pool.submitted);
		assert.is_nil(stanza:get_child("metadata", xmlns_metadata));
		assert.is_nil(metadata_of(oobs_of(stanza)[1]));
		assert.truthy(stanza:get_child("metadata", "urn:example:other")); -- not ours: kept
		assert.equal("look", stanza:get_child_text("body"));
	end);

	it("strips forged metadata when the analysis fails, and logs the URL and error", function ()
		local module, pool, handler = load();
		local stanza = groupchat(oob(photo, forged) .. forged);
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		pool:fail(photo, "refused: 10.0.0.5 is a private address");
		wake();
		assert.is_true(state.done);
		assert.is_nil(metadata_of(oobs_of(stanza)[1]));
		assert.is_nil(stanza:get_child("metadata", xmlns_metadata));
		assert.truthy(module:logged("debug", photo, "refused: 10.0.0.5 is a private address"));
		assert.equal(1, module.metrics.urls.values.failed);
	end);

	it("replaces forged metadata with its own", function ()
		local _, pool, handler = load();
		local stanza = groupchat(oob(photo, forged));
		stand_ins.run_in_runner(handler, event_for(stanza));
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
		local module, pool, handler = load({ media_metadata_max_urls = 2 });
		local stanza = groupchat(oob("https://a.example/1") .. oob("https://a.example/2")
			.. oob("https://a.example/3"));
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		assert.same({ "https://a.example/1", "https://a.example/2" },
			{ pool.submitted[1].url, pool.submitted[2].url });
		assert.equal(2, #pool.submitted);
		assert.truthy(module:logged("debug", "1 more URLs", "media_metadata_max_urls = 2"));
		pool:complete("https://a.example/1", { bytes = 1 });
		pool:complete("https://a.example/2", { bytes = 2 });
		wake();
		assert.is_true(state.done);
		assert.is_nil(metadata_of(oobs_of(stanza)[3]));
	end);

	it("submits a URL shared twice once and annotates both, and skips schemes it cannot fetch", function ()
		local _, pool, handler = load();
		local stanza = groupchat(oob(photo) .. oob("aesgcm://upload.example.net/x.jpg#key") .. oob(photo));
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		assert.equal(1, #pool.submitted);
		pool:complete(photo, { bytes = 5 });
		wake();
		assert.is_true(state.done);
		local x = oobs_of(stanza);
		assert.equal("5", metadata_of(x[1]):get_child_text("bytes"));
		assert.is_nil(metadata_of(x[2]));
		assert.equal("5", metadata_of(x[3]):get_child_text("bytes"));
	end);

	it("passes the message on without metadata when the deadline passes first", function ()
		local module, pool, handler = load({ media_metadata_deadline = 3 });
		local stanza = groupchat(oob(photo) .. oob("https://a.example/slow"));
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		assert.equal(1, #module.timers);
		assert.equal(3, module.timers[1].delay);
		pool:complete(photo, { bytes = 7 });
		wake();
		assert.is_false(state.done); -- still waiting for the slow one

		module.timers[1]:fire();
		stand_ins.flush();
		assert.is_true(state.done);
		assert.is_nil(state.error);
		assert.equal("7", metadata_of(oobs_of(stanza)[1]):get_child_text("bytes"));
		assert.is_nil(metadata_of(oobs_of(stanza)[2]));
		assert.truthy(module:logged("debug", "https://a.example/slow", "3s"));
		assert.equal(1, module.metrics.urls.values.deadline);

		-- The late result is drained and dropped; the message has gone on.
		pool:complete("https://a.example/slow", { bytes = 8 });
		wake();
		assert.is_nil(metadata_of(oobs_of(stanza)[2]));
		assert.equal(0, #pool.done);
		assert.truthy(module:logged("debug", "Discarding the result of job"));
	end);

	it("lets the message go on from the fd callback itself, not a tick later", function ()
		local _, pool, handler = load();
		local stanza = groupchat(oob(photo));
		local async = require "util.async";
		local state = { done = false };
		local runner = async.runner(function (e) handler(e); state.done = true; end);
		runner:run(event_for(stanza));
		pool:complete(photo, { bytes = 3 });
		stand_ins.server.watchers[1]:onreadable(); -- no flush: queued ticks have not run
		assert.is_true(state.done);
		assert.equal("3", metadata_of(oobs_of(stanza)[1]):get_child_text("bytes"));
	end);

	it("does nothing for a message without oob or metadata, and allocates nothing", function ()
		local _, pool, handler = load();
		local event = event_for(groupchat("<active xmlns='http://jabber.org/protocol/chatstates'/>"));
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

	-- COMPAT (see after_wait in the plugin): data LuaSocket buffered before mod_c2s paused the
	-- connection is read once it reads again.
	describe("after the wait, a connection with buffered data", function ()
		local function session(buffered)
			local conn = { _wantread = false, reads = 0 };
			conn.conn = { dirty = function () return buffered; end };
			function conn:onreadable() self.reads = self.reads + 1; end
			return { conn = conn };
		end

		local function analysed(module, pool, handler, origin)
			local event = event_for(groupchat(oob(photo)));
			event.origin = origin;
			local state = stand_ins.run_in_runner(handler, event);
			pool:complete(photo, { bytes = 1 });
			wake();
			assert.is_true(state.done);
			return module.timers;
		end

		it("is read once the connection reads again", function ()
			local module, pool, handler = load();
			local origin = session(true);
			local timers = analysed(module, pool, handler, origin);
			assert.equal(2, #timers); -- the deadline's, and this one
			assert.equal(0, timers[2].delay);
			assert.equal(0.01, timers[2]:fire()); -- still paused: look again soon
			assert.equal(0, origin.conn.reads);
			origin.conn._wantread = true;
			assert.is_nil(timers[2]:fire());
			assert.equal(1, origin.conn.reads);
		end);

		it("is not looked for when nothing is buffered (no timer)", function ()
			local module, pool, handler = load();
			local timers = analysed(module, pool, handler, session(false));
			assert.equal(1, #timers); -- the deadline's only
		end);
	end);

	it("passes the message on at once without metadata when the queue is full", function ()
		local module, pool, handler = load(nil, { capacity = 0 });
		local stanza = groupchat(oob(photo, forged));
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		assert.is_true(state.done);
		assert.equal(0, #module.timers); -- nothing to wait for
		assert.is_nil(metadata_of(oobs_of(stanza)[1]));
		assert.truthy(module:logged("debug", photo, "queue full"));
		assert.equal(0, #pool.submitted);
	end);

	it("outside an async runner only strips", function ()
		local module, pool, handler = load();
		local stanza = groupchat(oob(photo, forged));
		local ret = table.pack(handler(event_for(stanza)));
		assert.is_nil(ret[1]);
		assert.equal(0, #pool.submitted);
		assert.is_nil(metadata_of(oobs_of(stanza)[1]));
		assert.equal(photo, oobs_of(stanza)[1]:get_child_text("url"));
		assert.truthy(module:logged("debug", "not in an async runner"));
	end);

	it("never lets an error escape the hook, and delivers the message", function ()
		local module, _, handler = load(nil, { submit_error = "boom in submit" });
		local stanza = groupchat(oob(photo, forged));
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		assert.is_true(state.done);
		assert.is_nil(state.error);
		assert.is_nil(state.returned[1]);
		assert.is_nil(metadata_of(oobs_of(stanza)[1]));
		assert.truthy(module:logged("error", "boom in submit"));
	end);

	it("catches a failing drain in the fd callback and stops analysing", function ()
		local module, pool, handler = load(nil, { drain_error = "boom in drain" });
		local stanza = groupchat(oob(photo));
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		assert.has_no.errors(function () stand_ins.server.watchers[1]:onreadable(); end);
		stand_ins.flush();
		assert.truthy(module:logged("error", "boom in drain"));
		assert.is_true(state.done); -- the waiting message went on
		assert.same({ "watcher closed", "pool closed" }, stand_ins.events);

		local later = stand_ins.run_in_runner(handler, event_for(groupchat(oob(photo, forged))));
		assert.is_true(later.done);
		assert.equal(1, #pool.submitted);
	end);

	it("unload closes the watcher, then the pool, and lets waiting messages go", function ()
		local module, pool, handler = load();
		local stanza = groupchat(oob(photo));
		local state = stand_ins.run_in_runner(handler, event_for(stanza));
		assert.is_false(state.done);
		assert.is_function(module.unload); -- what Prosody calls on unload
		module.unload();
		stand_ins.flush();
		assert.same({ "watcher closed", "pool closed" }, stand_ins.events);
		assert.is_true(stand_ins.server.watchers[1].closed);
		assert.is_true(pool.closed);
		assert.is_true(state.done);
		assert.is_nil(metadata_of(oobs_of(stanza)[1]));
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
		end);
	end);
end);
