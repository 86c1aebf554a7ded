-- mod_muc_media_metadata
--
-- When an occupant shares a URL in <x xmlns="jabber:x:oob">, the server fetches it and adds
-- <metadata xmlns="xmpp:prosody.im/protocol/media-metadata#0"> (size, type, dimensions,
-- BlurHash), an XEP-0447 file share and an XEP-0385 SIMS reference before the room
-- broadcasts and archives the message.
--
-- Fetching and decoding happen on the worker threads of the native library
-- (media_metadata.so). This file only hands URLs to them, watches the fd that wakes Prosody
-- when results are waiting, and holds messages on the main thread; the elements are written
-- by media_metadata_stanzas.lib.lua.

local async = require "util.async";
local server = require "net.server";
local serialize = require "util.serialization".serialize;
local configmanager = require "core.configmanager";
local human_units = require "util.human.units";
local time_now = require "util.time".now;
local getpid = require "util.pposix".getpid;

-- Released together with the library (Cargo.toml, the rockspec); the load line shows both.
local version = "0.1.0";

-- Prosody finds it beside this file (mod_muc_media_metadata/media_metadata_stanzas.lib.lua)
-- or, installed by LuaRocks, as share/lua/5.4/mod_muc_media_metadata/media_metadata_stanzas.lua.
local stanzas = module:require "media_metadata_stanzas";

-- Loading the native library ------------------------------------------------------------

-- Prosody never adds <installer>/lib/lua/5.4/?.so to package.cpath, so after trying
-- require we look beside this file and in the LuaRocks tree it was installed into.
local function load_library()
	local ok, lib = pcall(require, "media_metadata");
	if ok then return lib; end
	local require_error = ("require \"media_metadata\": %s"):format(lib);
	local tried = {};

	local lua_version = _VERSION:match("%d+%.%d+");
	local version_pattern = lua_version:gsub("%.", "%%.");
	local mod_dir = "mod_" .. module.name;
	local dirs, candidates, seen = {}, {}, {};
	local function add(list, item)
		if item and not seen[item] then
			seen[item] = true;
			list[#list+1] = item;
		end
	end
	-- module.path is this file; get_directory() is not always its folder: for a plugin
	-- installed by prosodyctl or luarocks it points into TREE/lib/luarocks/rocks-5.4/.
	add(dirs, module.path and module.path:match("^(.+)/[^/]+$"));
	add(dirs, module:get_directory());
	for _, dir in ipairs(dirs) do
		add(candidates, dir .. "/media_metadata.so");
	end
	for _, dir in ipairs(dirs) do
		local tree = dir:match("^(.+)/share/lua/" .. version_pattern .. "/" .. mod_dir .. "$")
			or dir:match("^(.+)/share/lua/" .. version_pattern .. "$");
		if tree then
			add(candidates, ("%s/lib/lua/%s/media_metadata.so"):format(tree, lua_version));
		end
	end

	local broken; -- a library that is there but does not load: the likeliest cause
	for _, path in ipairs(candidates) do
		local loader, err = package.loadlib(path, "luaopen_media_metadata");
		if loader then
			ok, lib = pcall(loader, "media_metadata", path);
			if ok then
				module:log("debug", "Loaded the media_metadata library from %s", path);
				return lib;
			end
			err = lib;
		end
		if not tostring(err):find(path, 1, true) then
			err = ("%s: %s"):format(path, err);
		end
		local file = io.open(path, "rb");
		if file then
			file:close();
			broken = broken or err;
		end
		tried[#tried+1] = err;
	end
	tried[#tried+1] = require_error; -- the longest, and the least likely to help: last
	local cause = broken or ("there is no %s (cargo names it libmedia_metadata.so: install it as media_metadata.so)")
		:format(candidates[1]);
	error(("Could not load the media_metadata library: %s. Tried:\n\t%s"):format(cause, table.concat(tried, "\n\t")), 0);
end

local mm = load_library();
-- An older library (no check_options) would fail later with a bare "attempt to call a nil value".
if type(mm) ~= "table" or type(mm.new_pool) ~= "function" or type(mm.check_options) ~= "function" then
	error(("The media_metadata library found (version %s) has no new_pool() or check_options(): install the library of this plugin's release, %s")
		:format(type(mm) == "table" and tostring(mm.version) or "unknown", version), 0);
end

-- Configuration -------------------------------------------------------------------------------

-- The library owns every option's range and default (check_options): here each option is
-- read as written, a period such as "10 seconds" made seconds where Prosody parses them (13),
-- and whatever the library refuses is logged with the default used instead.
local option_prefix = "media_metadata_";
local periods = { deadline = true; connect_timeout = true; timeout = true; cache_ttl = true };
local lists = { allow_hosts = true; deny_hosts = true; formats = true };

local function configured_value(name)
	local value = module:get_option(option_prefix .. name);
	if periods[name] and type(value) == "string" and module.get_option_period
		and value:find("^%s*%d+%s*%a+%s*$") then
		-- COMPAT: get_option_period is new in Prosody 13; 0.12 takes numbers only. Only a whole
		-- number and a unit go to it: it reads "1.5 days" as 5 days.
		return module:get_option_period(option_prefix .. name) or value;
	elseif lists[name] and type(value) == "string" then
		return { value }; -- one entry, as get_option_set would take it
	end
	return value;
end

local raw_options = {};
for _, name in ipairs(mm.option_names) do
	raw_options[name] = configured_value(name);
end
local options, refused = mm.check_options(raw_options);
for _, r in ipairs(refused) do
	if r.entry then -- one entry of a list, dropped alone
		module:log("error", "Ignoring %s in %s%s: expected %s", serialize(r.value, "debug"), option_prefix, r.name, r.expected);
	else
		module:log("error", "Ignoring %s%s = %s: expected %s; using the default, %s", option_prefix, r.name,
			serialize(module:get_option(option_prefix .. r.name), "debug"), r.expected, serialize(r.default, "debug"));
	end
end

-- The number of single-character edits that turn `a` into `b`.
local function edit_distance(a, b)
	local previous = {};
	for j = 0, #b do previous[j] = j; end
	for i = 1, #a do
		local current = { [0] = i };
		for j = 1, #b do
			local substitution = previous[j-1] + (a:byte(i) == b:byte(j) and 0 or 1);
			current[j] = math.min(previous[j] + 1, current[j-1] + 1, substitution);
		end
		previous = current;
	end
	return previous[#b];
end

-- A misspelt option would otherwise be ignored in silence.
do
	local known = {};
	for _, name in ipairs(mm.option_names) do known[option_prefix .. name] = true; end
	local host_config = configmanager.getconfig()[module.host] or {};
	for key in pairs(host_config) do
		if type(key) == "string" and key:sub(1, #option_prefix) == option_prefix and not known[key] then
			local nearest, distance;
			for name in pairs(known) do
				local d = edit_distance(key, name);
				if not distance or d < distance or (d == distance and name < nearest) then
					nearest, distance = name, d;
				end
			end
			module:log("warn", "Unknown option %s is ignored; did you mean %s?", key, nearest);
		end
	end
end

local deadline, max_urls = options.deadline, options.max_urls;
-- The elements added for each URL: "metadata", "sfs", "sims" (an older library has no formats).
local enabled = {};
for _, name in ipairs(options.formats or stanzas.formats) do enabled[name] = true; end

-- Metrics -----------------------------------------------------------------------------------

-- outcome: metadata, unknown (nothing known), deadline, failed or not_queued; error: the
-- library's kind of error for the last two (timeout, refused, http_status, ...), else "".
local url_outcomes = module:metric("counter", "urls", "",
	"URLs shared in rooms, by outcome", { "outcome", "error" });
local held_for = module:metric("histogram", "held", "seconds",
	"Time a message was held back for analysis", {},
	{ buckets = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 } }):with_labels();

local function count(outcome, error_kind)
	url_outcomes:with_labels(outcome, error_kind or ""):add(1);
end

-- Worker pool -------------------------------------------------------------------------------


-- Job id -> the URL entry of a held message (see hold()). Plain tables: Prosody's GC runs a
-- cycle for every few percent the heap grows, so every kilobyte allocated per message costs
-- the main loop time.
local jobs = {};
local pool, watcher;
local pool_pid; -- the process the workers were started in: threads do not survive a fork

local release; -- lets a held message go on (below, with the held messages)

-- Records a job's outcome; the message goes on once none of its jobs is left.
local function finish(entry, done)
	entry.done = done;
	local held = entry.held;
	held.pending = held.pending - 1;
	if held.pending == 0 then
		release(held);
	end
end

-- `close`: false when the workers are gone (after a fork), and there is nothing to wait for.
local function stop_pool(reason, close)
	if watcher then
		-- The fd must leave epoll before the pool closes it.
		if watcher.close then
			watcher:close();
		else
			watcher:setflags(false, false); -- server_event's watchers have no :close()
		end
		watcher = nil;
	end
	if pool then
		if close ~= false then pool:close(); end
		pool = nil;
	end
	-- Whoever still waits goes on now without metadata rather than at its deadline.
	for id, entry in pairs(jobs) do
		jobs[id] = nil;
		finish(entry, { id = id, err = reason, kind = "closed" });
	end
end

local function drain()
	if not pool then return; end
	for _, done in ipairs(pool:drain()) do
		local entry = jobs[done.id];
		if entry then
			jobs[done.id] = nil;
			finish(entry, done);
		else
			module:log("debug", "Discarding the result of job %s: its message has gone on", done.id);
		end
	end
end

-- Called from the event loop, unprotected. The fd stays readable until drained, so a
-- failing drain would spin: stop analysing instead.
local function on_readable()
	local ok, err = xpcall(drain, debug.traceback);
	if not ok then
		module:log("error", "Collecting analysis results failed, analysis is off until reload: %s", err);
		pcall(stop_pool, "results cannot be collected");
	end
end

local function start_pool()
	local new = mm.new_pool(options);
	local ok, new_watcher = pcall(server.watchfd, new:getfd(), on_readable);
	if not ok or not new_watcher then
		new:close();
		error(("Could not watch the media_metadata pool's fd: %s"):format(new_watcher), 0);
	end
	pool, watcher, pool_pid = new, new_watcher, getpid();
end

-- Whether the workers are still there; if Prosody has forked since they started (a
-- daemonizing start the module did not see coming), says so and starts new ones.
local function workers_here()
	if not pool or pool_pid == getpid() then return pool ~= nil; end
	module:log("error", "The media_metadata workers were started in process %d and this is %d (Prosody forked): starting them again",
		pool_pid, getpid());
	stop_pool("the workers were lost in a fork", false);
	local ok, err = pcall(start_pool);
	if not ok then
		module:log("error", "Could not start the media_metadata workers, URLs are not analysed: %s", err);
	end
	return ok;
end

function module.unload()
	stop_pool("module unloaded");
end

-- Held messages -------------------------------------------------------------------------------

-- A message with URLs leaves muc-occupant-groupchat at our handler, which returns true: the
-- sender's session goes straight on with its next stanza (mod_c2s and mod_s2s pause a whole
-- connection while a handler waits, so waiting there would stall everything else the sender,
-- or a whole remote server, sends). When its results are in, or at the deadline, the message
-- goes on where it left off: through the handlers below ours, then the broadcast, as
-- room:handle_groupchat_to_room() does. The same sender's later messages in the same room
-- queue behind it, so their order is kept; nothing else waits.
-- queues[room JID][sender's full JID] = { room =, from =, held, held, ... }
local queues = {};

local on_groupchat; -- our muc-occupant-groupchat handler (below)
local host_events = (prosody.hosts[module.host] or prosody).events;

-- What fire_event would have run after our handler: the handlers below it, in order, until
-- one stops the event. True when one did (it sent an error, changed the subject, ...).
local function rest_of_groupchat_event(event)
	local handlers = host_events.get_handlers("muc-occupant-groupchat") or {};
	local after = false;
	for i = 1, #handlers do
		local handler = handlers[i];
		if after then
			if handler(event) ~= nil then return true; end
		elseif handler == on_groupchat then
			after = true;
		end
	end
	return false;
end

-- XEP-0045 status codes of an occupant removed by someone else.
local removed_by_status = { ["301"] = "banned"; ["307"] = "kicked"; ["321"] = "removed by an affiliation change";
	["322"] = "removed from a members-only room" };
local may_speak = { participant = true; moderator = true };

-- Why a held message may no longer be broadcast, or nil. An occupant who left of their own
-- accord still has it delivered: it was allowed when sent.
local function no_longer_allowed(held)
	local event = held.event;
	if held.removed then return held.removed; end
	if event.room:get_affiliation(event.from) == "outcast" then return "banned"; end
	local occupant = event.room:get_occupant_by_real_jid(event.from);
	if occupant and not may_speak[occupant.role] then return "lost voice"; end
end

local function deliver(held)
	local event = held.event;
	local room, stanza, from = event.room, event.stanza, event.from;
	local why = no_longer_allowed(held);
	if why then
		module:log("debug", "Not broadcasting message %s from %s to %s: %s while it was held", stanza.attr.id, from, room.jid, why);
		return;
	end
	if rest_of_groupchat_event(event) then return; end
	stanza.attr.from = event.occupant and event.occupant.nick or room.jid;
	room:broadcast_message(stanza);
	stanza.attr.from = from;
end

-- Held messages go on inside a runner of their own, as they would have in their sender's: a
-- handler below ours or an archive store may wait. One runner keeps them in order.
local deliverer = async.runner(function (held)
	local ok, err = xpcall(deliver, debug.traceback, held);
	if not ok then
		module:log("error", "Broadcasting held message %s failed: %s", held.event.stanza.attr.id, err);
	end
end);

-- Adds what the pool found to the message, and counts each URL's outcome.
local function annotate(held)
	if held.timer then
		held.timer:stop();
		held_for:sample(time_now() - held.started);
	end
	local wanted, analysed = held.wanted or {}, false;
	for _, entry in ipairs(wanted) do
		if entry.held then
			jobs[entry.id] = nil; -- a result after the deadline is discarded
			local done = entry.done;
			if not done then
				module:log("debug", "No result for %s within %gs", entry.url, deadline);
				count("deadline");
				-- Nobody waits for it any more: the worker stops at its next yield point.
				if pool then pool:cancel(entry.id); end
			elseif done.err then
				module:log("debug", "Analysing %s failed: %s", entry.url, done.err);
				count("failed", done.kind or "other");
			else
				entry.result, analysed = done.result, true;
				if done.result.note then
					-- Why a field is missing (say, no blurhash past max_bytes): for the admin only.
					module:log("debug", "%s: %s", entry.url, done.result.note);
				end
			end
		end
	end
	if not analysed then return; end
	-- The message goes on whatever happens here: pump() must reach the deliverer.
	local ok, err = xpcall(stanzas.add_elements, debug.traceback, held.event.stanza, wanted, enabled);
	if not ok then
		module:log("error", "Adding media metadata to message %s failed, passing it on: %s", held.event.stanza.attr.id, err);
		return;
	end
	for _, entry in ipairs(wanted) do
		if entry.added then
			-- error_kind: the picture could not be decoded, what came before it is known.
			count("metadata", entry.result.error_kind);
		elseif entry.result then
			module:log("debug", "Nothing known about %s", entry.url);
			count("unknown");
		end
	end
end

-- Sends on every message at the head of `queue` that is ready, in order.
local function pump(queue)
	while queue[1] and queue[1].ready do
		local held = table.remove(queue, 1);
		annotate(held);
		deliverer:run(held);
	end
	local room_queues = queues[queue.room];
	if not queue[1] and room_queues and room_queues[queue.from] == queue then
		room_queues[queue.from] = nil;
		if next(room_queues) == nil then queues[queue.room] = nil; end
	end
end

function release(held)
	if held.ready then return; end -- the deadline and the last result can both come
	held.ready = true;
	if held.queue then pump(held.queue); end
end

-- The message's URLs, once any forged contract element is gone.
local function collect(stanza)
	local wanted, ignored = stanzas.strip_and_collect(stanza, max_urls);
	if ignored > 0 then
		module:log("debug", "Not analysing %d more URLs in message %s (media_metadata_max_urls = %d)",
			ignored, stanza.attr.id, max_urls);
	end
	return wanted;
end

-- Submits the message's URLs; true if it is held (for them, or behind its sender's earlier
-- message). A message with nothing to wait for allocates nothing.
local function hold(event)
	local stanza, room_jid, from = event.stanza, event.room.jid, event.from;
	local wanted = stanzas.has_ours(stanza) and collect(stanza);
	local analyse = wanted and wanted[1] and workers_here(); -- may release held messages
	local room_queues = queues[room_jid];
	local queue = room_queues and room_queues[from];
	if not (queue or analyse) then
		return false;
	end
	local held = { event = event, wanted = wanted, pending = 0, started = time_now() };
	if analyse then
		for _, entry in ipairs(wanted) do
			local id, err, kind = pool:submit(entry.url);
			if id then
				entry.id, entry.held = id, held;
				jobs[id] = entry;
				held.pending = held.pending + 1;
			else
				module:log("debug", "Not analysing %s: %s", entry.url, err);
				count("not_queued", kind or "other");
			end
		end
	end
	if held.pending == 0 then
		if not queue then return false; end
		held.ready = true; -- waits only for the messages ahead of it
	else
		held.timer = module:add_timer(deadline, function () release(held); end);
	end
	if not queue then
		queue = { room = room_jid, from = from };
		room_queues = room_queues or {};
		queues[room_jid], room_queues[from] = room_queues, queue;
	end
	held.queue = queue;
	queue[#queue+1] = held;
	return true;
end

-- Below the role check (50), so only messages that will be broadcast are analysed; above
-- core MUC's own clean-up (0), which runs when the message goes on.
function on_groupchat(event)
	local ok, held = xpcall(hold, debug.traceback, event);
	if not ok then
		module:log("error", "Adding media metadata failed, passing the message on: %s", held);
	elseif held then
		return true;
	end
end
module:hook("muc-occupant-groupchat", on_groupchat, 10);

-- Occupants removed while their message is held: their message is not broadcast.
module:hook("muc-broadcast-presence", function (event)
	local room_queues = queues[event.room.jid];
	if not (room_queues and event.x and event.occupant) then return; end
	local why;
	for status in event.x:childtags("status") do
		why = why or removed_by_status[status.attr.code];
	end
	if not why then return; end
	for real_jid in event.occupant:each_session() do
		for _, held in ipairs(room_queues[real_jid] or {}) do
			held.removed = why;
		end
	end
end);

-- A room destroyed while messages wait for it: they have nowhere to go.
module:hook("muc-room-destroyed", function (event)
	for _, queue in pairs(queues[event.room.jid] or {}) do
		for _, held in ipairs(queue) do
			held.removed = "the room was destroyed";
		end
	end
end);

-- Nothing is lost at shutdown: what is held goes on now, without what is not done.
module:hook_global("server-stopping", function ()
	stop_pool("Prosody is stopping");
end);

-- Workers started before Prosody daemonizes would not survive its fork (0.12 forks at
-- server-started, after loading modules): start them after it, when the server is starting.
if prosody.start_time then
	start_pool();
else
	module:hook_global("server-started", function ()
		local ok, err = pcall(start_pool);
		if not ok then
			module:log("error", "Could not start the media_metadata workers, URLs are not analysed: %s", err);
		end
	end, -100);
end

if mm.version ~= version then
	module:log("warn", "This plugin is version %s but its media_metadata library is %s: install the two from the same release",
		version, mm.version);
end
module:log("info", "mod_%s %s (library %s) with %d threads: private addresses %s, at most %s and %s per file, %gs per message",
	module.name, version, mm.version, options.threads, options.allow_private and "allowed" or "refused",
	human_units.format(options.max_bytes, "B", "b"), human_units.format(options.max_pixels, "px"), deadline);
