-- Stand-ins for what mod_muc_media_metadata gets from Prosody and from the native library,
-- so the plugin can run under busted without either. Prosody's own util.* modules are used
-- for real (from /usr/lib/prosody, or $PROSODY_SOURCE), and so are core.moduleapi's
-- typed config getters: bad-value handling is tested against the real ones.

local prosody_source = os.getenv("PROSODY_SOURCE") or "/usr/lib/prosody";
package.path = ("%s/?.lua;%s"):format(prosody_source, package.path);
package.cpath = ("%s/?.so;%s"):format(prosody_source, package.cpath);

local stand_ins = {};

-- Things done to watchers and pools, in order, across one test.
local events = {};
stand_ins.events = events;

-- net.server: only watchfd is used by the plugin.
local server = { watchers = {} };
function server.watchfd(fd, onreadable)
	local watcher = { fd = fd, onreadable = onreadable };
	function watcher:close()
		self.closed = true;
		table.insert(events, "watcher closed");
	end
	table.insert(server.watchers, watcher);
	return watcher;
end
stand_ins.server = server;

-- core.moduleapi needs these before it loads; nothing here calls into them.
-- start_time: the server has started (a plugin loaded at start-up sees none until then).
_G.prosody = _G.prosody or { hosts = {}, paths = {}, core_post_stanza = function () end, start_time = os.time() };
package.loaded["net.server"] = server;
package.loaded["util.timer"] = package.loaded["util.timer"] or {
	add_task = function () error("stand-in util.timer: use module:add_timer"); end;
	stop = function () end;
	reschedule = function () end;
};
local moduleapi = require "core.moduleapi";
local format = require "util.format".format;
local xml = require "util.xml";
local async = require "util.async";
local new_events = require "util.events".new;

-- Prosody runs some async work (a runner's next queued item) on the next tick of its timer,
-- not at once; queue it so tests see the same ordering and can drive it.
local ticks = {};
local function next_tick(f) table.insert(ticks, f); end
async.set_nexttick(next_tick);

function stand_ins.flush()
	while ticks[1] do
		table.remove(ticks, 1)();
	end
end

stand_ins.stores = {};

function stand_ins.reset()
	for i = #events, 1, -1 do events[i] = nil; end
	stand_ins.stores, stand_ins.store_error = {}, nil;
	server.watchers = {};
	stand_ins.flush();
end

-- A module object as modulemanager makes one, recording what the plugin does with it.
function stand_ins.module(config, fields)
	local module = setmetatable({
		name = "muc_media_metadata";
		host = "conference.example.com";
		path = "/srv/prosody/plugins/mod_muc_media_metadata/mod_muc_media_metadata.lua";
		config = config or {};
		logs = {};
		hooks = {};
		timers = {};
		metrics = {};
		items = {};
	}, { __index = moduleapi });
	for k, v in pairs(fields or {}) do module[k] = v; end
	-- The host's events, as Prosody's: hooks go there too, so fire_event runs them in order.
	local host_events = new_events();
	prosody.hosts[module.host] = { events = host_events };
	module.events = host_events;
	local global_events = new_events();
	module.global_events = global_events;

	function module:get_option(name, default)
		local value = self.config[name];
		if value == nil then return default; end
		return value;
	end
	function module:log(level, fmt, ...)
		table.insert(self.logs, { level = level, message = format(fmt, ...) });
	end
	function module:hook(event, handler, priority)
		table.insert(self.hooks, { event = event, handler = handler, priority = priority or 0 });
		host_events.add_handler(event, handler, priority);
	end
	function module:hook_global(event, handler, priority)
		table.insert(self.hooks, { event = event, handler = handler, priority = priority or 0, global = true });
		global_events.add_handler(event, handler, priority);
	end
	function module:add_timer(delay, callback)
		local timer = { delay = delay, callback = callback };
		function timer.stop() timer.stopped = true; end
		-- What util.timer does when the delay is up.
		function timer.fire()
			if not timer.stopped then return timer.callback(0); end
		end
		table.insert(self.timers, timer);
		return timer;
	end
	-- A metric family whose metrics add up what they are given, keyed by their labels.
	function module:metric(type_, name)
		local family = { type = type_, values = {} };
		function family.with_labels(_, ...)
			local key = table.concat({ ... }, ",");
			local function add(_, n) family.values[key] = (family.values[key] or 0) + n; end
			return { add = add; sample = function (m) add(m, 1); end };
		end
		self.metrics[name] = family;
		return family;
	end

	-- What was logged at `level` whose text contains every one of the plain strings given.
	function module:logged(level, ...)
		local found = {};
		for _, entry in ipairs(self.logs) do
			local all = entry.level == level;
			for i = 1, select("#", ...) do
				all = all and entry.message:find((select(i, ...)), 1, true) ~= nil;
			end
			if all then table.insert(found, entry.message); end
		end
		return found[1], found;
	end

	-- module:open_store: keyval stores in stand_ins.stores, which outlive a module (a reload);
	-- stand_ins.store_error makes every call fail as a store whose database is down does.
	function module:open_store(name, kind)
		assert(kind == nil or kind == "keyval", "stand-in stores are keyval only");
		local data = stand_ins.stores[name] or {};
		stand_ins.stores[name] = data;
		return {
			get = function (_, key)
				if stand_ins.store_error then return nil, stand_ins.store_error; end
				return data[key];
			end;
			set = function (_, key, value)
				if stand_ins.store_error then return nil, stand_ins.store_error; end
				data[key] = value;
				return true;
			end;
		};
	end
	-- module:add_item: recorded by kind.
	function module:add_item(kind, item)
		self.items[kind] = self.items[kind] or {};
		table.insert(self.items[kind], item);
	end

	function module:hook_for(event)
		for _, hook in ipairs(self.hooks) do
			if hook.event == event then return hook; end
		end
	end
	return module;
end

-- The native library: new_pool gives a pool that records submits and lets the test
-- deliver results, which its next drain() returns.
-- The options are the real library's (it owns their ranges and defaults): the specs run with
-- the release build on LUA_CPATH (scripts/test).
function stand_ins.real_library()
	package.loaded.media_metadata = nil;
	return require "media_metadata";
end

function stand_ins.native(settings)
	settings = settings or {};
	local real = stand_ins.real_library();
	local lib = { version = "9.8.7-stand-in", pools = {}, option_names = real.option_names, check_options = real.check_options };
	function lib.new_pool(options)
		local pool = { options = options, submitted = {}, done = {}, next_id = 100 };
		local capacity = settings.capacity or math.huge;
		function pool:submit(url)
			if settings.submit_error then error(settings.submit_error); end
			if self.closed then return nil, "the pool is closed", "closed"; end
			if #self.submitted >= capacity then return nil, "queue full", "queue_full"; end
			self.next_id = self.next_id + 1;
			table.insert(self.submitted, { id = self.next_id, url = url });
			return self.next_id;
		end
		-- A local upload: recorded under "file:" and its path, as the real pool keys it.
		function pool:submit_file(path, record)
			local id, err, kind = self:submit("file:" .. path);
			if id then self.submitted[#self.submitted].record = record; end
			return id, err, kind;
		end
		-- A conditional GET: recorded under "if-changed " and the URL, as the real pool keys it.
		function pool:submit_if_changed(url, etag, last_modified)
			local id, err, kind = self:submit("if-changed " .. url);
			if id then self.submitted[#self.submitted].since = { etag = etag; last_modified = last_modified }; end
			return id, err, kind;
		end
		function pool.getfd() return 42; end
		pool.cancelled = {};
		function pool:cancel(id) table.insert(self.cancelled, id); return true; end
		function pool:drain()
			if settings.drain_error then error(settings.drain_error); end
			local done = self.done;
			self.done = {};
			return done;
		end
		function pool:close()
			if not self.closed then table.insert(events, "pool closed"); end
			self.closed = true;
		end
		-- For tests: the job for `url` finished.
		function pool:id_of(url)
			for _, job in ipairs(self.submitted) do
				if job.url == url then return job.id; end
			end
			error("not submitted: " .. url);
		end
		function pool:complete(url, result)
			table.insert(self.done, { id = self:id_of(url), result = result });
		end
		function pool:fail(url, err, kind)
			table.insert(self.done, { id = self:id_of(url), err = err, kind = kind });
		end
		table.insert(lib.pools, pool);
		return pool;
	end
	return lib;
end

local helpers_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".";
stand_ins.lua_dir = helpers_dir .. "/../../lua";
stand_ins.plugin_file = stand_ins.lua_dir .. "/mod_muc_media_metadata.lua";

-- module:require "name" as core.moduleapi has it: name.lib.lua beside the plugin, run in
-- the plugin's environment.
local function require_lib(module, name)
	local f = assert(loadfile(("%s/%s.lib.lua"):format(stand_ins.lua_dir, name), "t", module.environment));
	return f();
end

stand_ins.require_lib = require_lib;

-- The stanza library alone, in an environment whose `module` is `module` (for its logs).
function stand_ins.stanza_library(module)
	module = module or stand_ins.module();
	module.environment = setmetatable({ module = module }, { __index = _G });
	return require_lib(module, "media_metadata_stanzas"), module;
end

-- Runs the plugin as Prosody's module loader does: its own environment, `module` a global
-- in it, everything else from _G (or from `env`, for what a test replaces).
function stand_ins.load_plugin(module, env)
	env = env or {};
	env.module = module;
	setmetatable(env, { __index = _G });
	module.environment = env;
	module.require = rawget(module, "require") or require_lib; -- a test may give its own
	local f = assert(loadfile(stand_ins.plugin_file, "t", env));
	f();
	return env;
end

-- Runs `handler(event)` the way Prosody handles a stanza from a session: in an async runner.
function stand_ins.run_in_runner(handler, event)
	local state = { done = false };
	local runner = async.runner(function (e)
		state.returned = table.pack(handler(e));
		state.done = true;
	end, {
		error = function (_, err) state.error = err; end;
	});
	runner:run(event);
	stand_ins.flush();
	return state;
end

-- A MUC room as muc.lib.lua has it, as far as the plugin uses it: occupants by real JID,
-- affiliations by bare JID, and what it broadcast (the stanza as sent, and its sender).
function stand_ins.room(jid)
	local room = { jid = jid, occupants = {}, affiliations = {}, broadcasts = {} };
	function room:get_occupant_by_real_jid(real_jid) return self.occupants[real_jid]; end
	function room:get_affiliation(j) return self.affiliations[j:match("^[^/]+")]; end
	function room:broadcast_message(stanza)
		table.insert(self.broadcasts, { from = stanza.attr.from, xml = tostring(stanza), stanza = stanza });
	end
	-- An occupant with one session, `real_jid`.
	function room:join(real_jid, nick, role)
		local occupant = { nick = self.jid .. "/" .. nick, role = role or "participant", bare_jid = real_jid:match("^[^/]+") };
		function occupant.each_session() return pairs({ [real_jid] = true }); end
		self.occupants[real_jid] = occupant;
		return occupant;
	end
	-- The bodies broadcast so far, in order.
	function room:bodies()
		local list = {};
		for _, b in ipairs(self.broadcasts) do table.insert(list, b.stanza:get_child_text("body")); end
		return list;
	end
	return room;
end

-- What room:handle_groupchat_to_room() does with `stanza` from `stanza.attr.from`, in an
-- async runner as for a stanza from a session: fires muc-occupant-groupchat on the module's
-- host and, unless a handler stopped it, broadcasts. `state.done` tells whether the runner
-- is free again (the session may go on with its next stanza).
function stand_ins.send_groupchat(module, room, stanza, origin)
	local from = stanza.attr.from;
	local event = { room = room, origin = origin, stanza = stanza, from = from, occupant = room.occupants[from] };
	return stand_ins.run_in_runner(function (e)
		if module.events.fire_event("muc-occupant-groupchat", e) then return true; end
		stanza.attr.from = e.occupant and e.occupant.nick or room.jid;
		room:broadcast_message(stanza);
		stanza.attr.from = from;
		return true;
	end, event);
end

function stand_ins.parse(text)
	return assert(xml.parse(text));
end

return stand_ins;
