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
local sha256 = require "util.hashes".sha256;
local promise = require "util.promise";
-- The function mod_http_file_share names its files with (storagemanager's olddm.getpath is it).
local dm_getpath = require "util.datamanager".getpath;

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

-- result: hit, miss, expired, invalid (a corrupt or foreign entry), stored, failed; for a hit
-- with validators, then unchanged (304) or changed (analysed again).
local store_outcomes = module:metric("counter", "store", "",
	"Lookups and writes of results in the persistent store, by result", { "result" });

-- The same counts as plain numbers, for the shell command: a metric's value can only be read
-- back with a statistics backend configured.
local tally = {};

local function count(outcome, error_kind)
	url_outcomes:with_labels(outcome, error_kind or ""):add(1);
	local name = error_kind and error_kind ~= "" and ("urls %s (%s)"):format(outcome, error_kind) or ("urls " .. outcome);
	tally[name] = (tally[name] or 0) + 1;
end

local function count_store(outcome)
	store_outcomes:with_labels(outcome):add(1);
	tally["store " .. outcome] = (tally["store " .. outcome] or 0) + 1;
end

-- Persistent results --------------------------------------------------------------------------

-- Results are kept in Prosody's storage (storage = "internal", "sql", ...) for cache_ttl, so a
-- restart or reload does not analyse everything again, and several nodes on one SQL database
-- share them. Keyed by what names the content: a local upload by its slot (a slot's file never
-- changes); a remote URL by the URL and, where its server sent them, the ETag and
-- Last-Modified kept with the result: such a result is reused only after a conditional GET is
-- answered 304 Not Modified (no body read; anything else is a changed file, analysed afresh).
-- A remote result without either is reused as it is within cache_ttl. The key is hashed: a
-- URL is no file name. Failures and half-decoded pictures are not kept: they may well succeed
-- later.
local store_version = 1;
local results_store = module:open_store("media_metadata");
local store_down_until = nil; -- while the store fails: analyse without it, say so once
local store_retry = 60;

-- A failing store (SQL down) costs one log line per outage, never a message.
local function store_failed(what, err)
	if not store_down_until then
		module:log("warn", "The results store failed (%s: %s): analysing without persistence, trying it again every %ds",
			what, err, store_retry);
	end
	store_down_until = time_now() + store_retry;
	count_store("failed");
end

local function store_usable()
	if store_down_until and time_now() < store_down_until then return false; end
	return true;
end

local function store_recovered()
	if store_down_until then
		module:log("info", "The results store works again: results persist");
		store_down_until = nil;
	end
end

-- What a stored result may hold: each field's Lua type and, for strings, the pattern and
-- the longest value accepted. Anything else in an entry makes it corrupt or foreign.
local base64 = "^[%w+/]+=*$";
local result_fields = {
	bytes = { "integer" }; width = { "integer" }; height = { "integer" };
	thumbnail_width = { "integer" }; thumbnail_height = { "integer" }; length = { "integer" };
	animated = { "boolean" };
	type = { "string", "^[%w!#$&^_.+-]+/[%w!#$&^_.+-]+$", 255 };
	blurhash = { "string", "^[%w#$%%*+,%-.:;=?@%[%]%^_{|}~]+$", 100 };
	name = { "string", "^[^%c]+$", 1024 };
	date = { "string", "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", 20 };
	sha256 = { "string", base64, 44 };
	thumbhash = { "string", base64, 64 };
	thumbnail = { "string", base64, 64 * 1024 };
	-- Sent back to the server as they came (visible ASCII; the library's own limit).
	etag = { "string", "^[!-~][ -~]*$", 256 };
	last_modified = { "string", "^[!-~][ -~]*$", 256 };
};

-- A copy of `result` with only the fields above, or nil and why it cannot be trusted.
local function checked_result(result)
	if type(result) ~= "table" then return nil, "not a table"; end
	local clean = {};
	for name, value in pairs(result) do
		local field = result_fields[name];
		if not field then return nil, ("unknown field %s"):format(tostring(name)); end
		local lua_type, pattern, max_len = field[1], field[2], field[3];
		if lua_type == "integer" then
			value = type(value) == "number" and math.tointeger(value) or nil;
			if not value or value < 0 then
				return nil, ("%s is not a whole number"):format(name);
			end
		elseif lua_type == "boolean" then
			if type(value) ~= "boolean" then return nil, ("%s is not a boolean"):format(name); end
		elseif type(value) ~= "string" or #value > max_len or not value:find(pattern) then
			return nil, ("bad %s"):format(name);
		end
		clean[name] = value;
	end
	return clean;
end

local function store_key(key)
	return sha256(key, true);
end

-- The stored result for `key`, or nil (never stored, expired, unusable, or the store is down).
local function recall(key)
	if not (results_store and store_usable()) then return nil; end
	local ok, entry, err = pcall(results_store.get, results_store, store_key(key));
	if not ok or (entry == nil and err) then
		store_failed("reading", ok and err or entry);
		return nil;
	end
	store_recovered();
	if entry == nil then count_store("miss"); return nil; end
	local result, why;
	if type(entry) ~= "table" or entry.v ~= store_version or entry.key ~= key or type(entry.at) ~= "number" then
		why = "not an entry of this module";
	else
		result, why = checked_result(entry.result);
	end
	if not result then
		module:log("warn", "Ignoring the stored result for %s: %s", key, why);
		count_store("invalid");
		return nil;
	end
	if os.time() - entry.at > options.cache_ttl then
		count_store("expired");
		pcall(results_store.set, results_store, store_key(key), nil);
		return nil;
	end
	count_store("hit");
	return result;
end

local function remember(key, result)
	if not (results_store and store_usable()) or result.error_kind then return; end
	local kept = {};
	for name in pairs(result_fields) do kept[name] = result[name]; end
	local clean, why = checked_result(kept);
	if not clean then -- the library's own result: never expected
		module:log("warn", "Not storing the result for %s: %s", key, why);
		return;
	end
	local ok, done, err = pcall(results_store.set, results_store, store_key(key),
		{ v = store_version; key = key; at = os.time(); result = clean });
	if not ok or not done then
		store_failed("writing", ok and err or done);
		return;
	end
	store_recovered();
	count_store("stored");
end

-- Local uploads ---------------------------------------------------------------------------------

-- A URL of an http_file_share component of this Prosody is read from its store on disk by a
-- worker: no HTTP request (and no allow_private for it), the name and date from the upload
-- record. Found at each URL, so a component loaded after the MUC, or reloaded, is seen.

local default_port = { http = "80"; https = "443" };

-- scheme, authority (lower case, without a default port) and path of an http(s) URL.
local function split_url(u)
	local scheme, authority, path = u:match("^(%a[%w+.-]*)://([^/?#]+)([^?#]*)");
	if not scheme then return nil; end
	scheme, authority = scheme:lower(), authority:lower();
	local port = authority:match(":(%d+)$");
	if port and port == default_port[scheme] then authority = authority:sub(1, -#port - 2); end
	return scheme, authority, path == "" and "/" or path;
end

-- Each upload component's env, base URL (configured or derived) and upload record store.
local upload_stores = setmetatable({}, { __mode = "k" });
local function upload_components()
	local list = {};
	for host, h in pairs(prosody.hosts) do
		local env = h.modules and h.modules.http_file_share;
		local mod = type(env) == "table" and env.module;
		if mod then
			local base = mod:get_option_string("http_file_share_base_url");
			if not base and mod.http_url then
				local ok, derived = pcall(mod.http_url, mod);
				base = ok and derived or nil;
			end
			if base then
				local records = upload_stores[mod];
				if not records then
					records = mod:open_store("uploads", "archive");
					upload_stores[mod] = records;
				end
				list[#list+1] = { host = host; module = mod; base = base; records = records };
			end
		end
	end
	return list;
end

-- The slot a URL names on one of the components, or nil. A slot is what util.id or util.uuid
-- made: letters, digits, - and _. Anything else (.., %2e%2e, /etc/passwd, a long string) is
-- refused here, before it could be a path.
local max_slot_length = 64;
local function slot_of(u)
	local scheme, authority, path = split_url(u);
	if not scheme then return nil; end
	for _, c in ipairs(upload_components()) do
		local base_scheme, base_authority, base_path = split_url(c.base);
		if base_path and base_path:sub(-1) ~= "/" then base_path = base_path .. "/"; end
		if scheme == base_scheme and authority == base_authority and path:sub(1, #base_path) == base_path then
			local raw = path:sub(#base_path + 1):match("^[^/]*");
			local slot = raw:gsub("%%(%x%x)", function (h) return string.char(tonumber(h, 16)); end);
			if #slot == 0 or #slot > max_slot_length or not slot:find("^[%w_-]+$") then
				return false, c, ("%q is not a slot"):format(raw:sub(1, max_slot_length));
			end
			return slot, c;
		end
	end
	return nil;
end

-- How long the component keeps uploads (its own default: a week); nil for ever.
local function expiry_of(mod)
	local name = "http_file_share_expires_after";
	local expiry;
	if mod.get_option_period then
		expiry = mod:get_option_period(name, "1w");
	else
		expiry = mod:get_option_number(name, 7 * 86400); -- COMPAT: 0.12 takes seconds, <0 for ever
	end
	if expiry == math.huge or expiry < 0 then return nil; end
	return expiry;
end

-- For a URL of a local upload: the file and its record, or false and why there is no
-- metadata (unknown, expired or bad slot); nil for any other URL.
local function local_upload(u)
	local slot, c, why = slot_of(u);
	if slot == nil then return nil; end
	if not slot then return false, why; end
	local ok, record, when = pcall(c.records.get, c.records, nil, slot);
	if not ok or type(record) ~= "table" or not record.attr or type(when) ~= "number" then
		return false, ("no upload %s on %s%s"):format(slot, c.host, ok and "" or (": " .. tostring(record)));
	end
	local expiry = expiry_of(c.module);
	if expiry and when + expiry < os.time() then
		return false, ("upload %s on %s has expired"):format(slot, c.host);
	end
	return {
		key = ("upload %s %s"):format(c.host, slot);
		path = dm_getpath(slot, c.host, "http_file_share", "bin");
		record = {
			name = record.attr.filename;
			type = record.attr["content-type"];
			date = os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(when));
		};
	};
end

-- Worker pool -------------------------------------------------------------------------------


-- Job id -> the URL entry of a held message (see hold()). Plain tables: Prosody's GC runs a
-- cycle for every few percent the heap grows, so every kilobyte allocated per message costs
-- the main loop time.
local jobs = {};
local pool, watcher;
local pool_pid; -- the process the workers were started in: threads do not survive a fork

local release; -- lets a held message go on (below, with the held messages)
local submit; -- hands one URL to the store, the pool or neither (below)

-- Records a job's outcome; the message goes on once none of its jobs is left.
local function finish(entry, done)
	entry.done = done;
	local held = entry.held;
	held.pending = held.pending - 1;
	if held.pending == 0 then
		release(held);
	end
end

-- A job of a held message, or of a shell command (which waits with on_done).
local function complete(entry, done)
	if entry.on_done then
		entry.on_done(done);
	else
		finish(entry, done);
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
		complete(entry, { id = id, err = reason, kind = "closed" });
	end
end

local function drain()
	if not pool then return; end
	for _, done in ipairs(pool:drain()) do
		local entry = jobs[done.id];
		if entry then
			jobs[done.id] = nil;
			if done.result and done.result.unchanged then -- a 304: the stored result holds
				count_store("unchanged");
				done = { id = done.id; result = entry.stored; stored = true };
			elseif entry.stored and done.result then
				count_store("changed");
			end
			complete(entry, done);
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

local shell_hosts; -- this instance's entry for the shell commands (below)

function module.unload()
	stop_pool("module unloaded");
	if shell_hosts then shell_hosts[module.host] = nil; end
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
			if entry.id then jobs[entry.id] = nil; end -- a result after the deadline is discarded
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
				if not (done.stored or done.cached) then remember(entry.key, done.result); end
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

-- Finds what `entry` (a URL of a message, or of a shell command) names and where its result
-- comes from: the store (entry.done is set), the pool (a job id), or nowhere (nil, why, kind).
function submit(entry)
	local upload, why = local_upload(entry.url);
	if upload == false then
		return nil, why, "local";
	end
	entry.key = upload and upload.key or entry.url;
	local stored = recall(entry.key);
	if stored and not upload and (stored.etag or stored.last_modified) then
		-- Reused only if the server says it has not changed (see Persistent results).
		module:log("debug", "%s: in the results store, asking its server whether it changed", entry.url);
		entry.stored = stored;
		return pool:submit_if_changed(entry.url, stored.etag, stored.last_modified);
	elseif stored then
		module:log("debug", "%s: from the results store", entry.url);
		entry.done = { result = stored; stored = true };
		return nil;
	end
	if upload then
		module:log("debug", "%s is local upload %s: reading it from disk", entry.url, upload.path);
		return pool:submit_file(upload.path, upload.record);
	end
	return pool:submit(entry.url);
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
	local recalled = false;
	if analyse then
		for _, entry in ipairs(wanted) do
			local id, err, kind = submit(entry);
			if id then
				entry.id, entry.held = id, held;
				jobs[id] = entry;
				held.pending = held.pending + 1;
			elseif entry.done then -- from the store
				entry.held, recalled = held, true;
			elseif err then
				module:log("debug", "Not analysing %s: %s", entry.url, err);
				if kind == "local" then
					count("unknown");
				else
					count("not_queued", kind or "other");
				end
			end
		end
	end
	if held.pending == 0 then
		if not queue then
			if recalled then annotate(held); end -- all from the store: on at once
			return false;
		end
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

-- Admin shell (Prosody 13) --------------------------------------------------------------------

-- One known field a line, the thumbnail by its size only.
local function describe_result(url, result, source)
	local lines = { ("%s (%s):"):format(url, source) };
	local names = {};
	for name in pairs(result) do names[#names+1] = name; end
	table.sort(names);
	for _, name in ipairs(names) do
		local value = result[name];
		if name == "thumbnail" then value = ("%d bytes of base64"):format(#value); end
		lines[#lines+1] = ("  %s = %s"):format(name, tostring(value));
	end
	return table.concat(lines, "\n");
end

-- Analyses `url` as a message in a room would have it analysed (local upload or fetch, the
-- caches, the store, the pool and its limits), without a message: a promise of the result.
local function analyse_for_shell(url)
	return promise.new(function (resolve, reject)
		if not workers_here() then return reject("the media_metadata workers are not running"); end
		local entry = { url = url };
		local id, err = submit(entry);
		if entry.done then
			return resolve(describe_result(url, entry.done.result, "from the results store"));
		elseif not id then
			return reject(("not analysed: %s"):format(err or "unknown"));
		end
		local timer;
		function entry.on_done(done)
			if timer then timer:stop(); end
			if done.err then
				return reject(("analysis failed (%s): %s"):format(done.kind or "other", done.err));
			end
			if not (done.cached or done.stored) then remember(entry.key, done.result); end
			resolve(describe_result(url, done.result, done.cached and "from the memory cache"
				or done.stored and "from the results store, its server says unchanged (304)"
				or entry.key ~= url and "read from the upload store" or "fetched"));
		end
		jobs[id] = entry;
		timer = module:add_timer(options.timeout + 1, function ()
			if jobs[id] ~= entry then return; end
			jobs[id] = nil;
			if pool then pool:cancel(id); end
			reject(("no result within %gs"):format(options.timeout + 1));
		end);
	end);
end

local function counters_text()
	local names = {};
	for name in pairs(tally) do names[#names+1] = name; end
	table.sort(names);
	local lines = {};
	for _, name in ipairs(names) do lines[#lines+1] = ("%s: %d"):format(name, tally[name]); end
	local pending = 0;
	for _ in pairs(jobs) do pending = pending + 1; end
	lines[#lines+1] = ("jobs waited for now: %d"):format(pending);
	lines[#lines+1] = ("results store: %s"):format(not results_store and "none"
		or store_usable() and "in use" or "failing, not used");
	return ("%s:\n%s"):format(module.host, table.concat(lines, "\n"));
end

-- The commands are global ones that pick the MUC host by their first argument: mod_admin_shell
-- only takes host commands (host_selector) from hosts it is loaded on, and a component does
-- not inherit it from modules_enabled. Each loaded instance registers itself here.
shell_hosts = module:shared("/*/muc_media_metadata/shell");
shell_hosts[module.host] = { analyse = analyse_for_shell; counters = counters_text };

local function for_host(host)
	local instance = shell_hosts[host];
	if not instance then
		return nil, ("mod_muc_media_metadata is not loaded on %s"):format(tostring(host));
	end
	return instance;
end

-- COMPAT: Prosody 0.12's shell has no commands from modules; the items are simply unused there.
local shell_commands = { {
	section = "media_metadata";
	section_desc = "Media metadata for URLs shared in rooms (mod_muc_media_metadata)";
	name = "analyze";
	desc = "Analyse a URL as mod_muc_media_metadata on the MUC host would for a message in a room";
	args = { { name = "host", type = "string" }; { name = "url", type = "string" } };
	handler = function (self, host, url) --luacheck: ignore 212/self
		local instance, err = for_host(host);
		if not instance then return nil, err; end
		return instance.analyse(url);
	end;
}; {
	section = "media_metadata";
	section_desc = "Media metadata for URLs shared in rooms (mod_muc_media_metadata)";
	name = "counters";
	desc = "Show how many URLs the MUC host analysed, by outcome, and how the results store was used";
	args = { { name = "host", type = "string" } };
	handler = function (self, host) --luacheck: ignore 212/self
		local instance, err = for_host(host);
		if not instance then return nil, err; end
		return true, instance.counters();
	end;
} };

local function add_shell_commands()
	local global = module:context("*");
	for _, command in ipairs(shell_commands) do
		global:add_item("shell-command", command);
	end
end
add_shell_commands();
-- mod_admin_shell picks up existing commands of global modules only: when it loads after this
-- module (hosts start in no fixed order), give them to it again.
module:hook_global("module-loaded", function (event)
	if event.module == "admin_shell" then add_shell_commands(); end
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
