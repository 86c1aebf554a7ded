//! The library as Lua sees it (the binding in src/lua.rs), from a vendored Lua 5.4: the
//! option check's shapes, and errors that keep their kind.

mod common;

use common::*;
use mlua::Lua;

/// Runs `chunk` with the library as the global `mm` (and `base`, a test server's base URL).
fn run(chunk: &str, base: &str) {
    let lua = Lua::new();
    let mm = media_metadata::exports(&lua).unwrap();
    lua.globals().set("mm", mm).unwrap();
    lua.globals().set("base", base).unwrap();
    if let Err(e) = lua.load(chunk).set_name("test").exec() {
        panic!("{e}");
    }
}

#[test]
fn check_options_takes_what_the_plugin_once_passed_and_lists_each_refusal() {
    run(
        r#"
        local clean, refused = mm.check_options({
            cache_ttl = 90000, cache_size = 1048576.0, threads = 0, alow_private = true,
            allow_hosts = { "good.example", "bad host", "*.cdn.example" },
            timeout = 1.5 * 86400, blurhash_components = { 5, 2.0 },
        });
        assert(clean.cache_ttl == 90000, "cache_ttl")
        assert(math.type(clean.cache_size) == "integer" and clean.cache_size == 1048576, "cache_size")
        assert(clean.threads == 2, "a refused value falls back to its default")
        assert(clean.timeout == 10, "timeout: 129600 is past 600, the default is used")
        assert(#clean.allow_hosts == 2 and clean.allow_hosts[1] == "good.example"
            and clean.allow_hosts[2] == "*.cdn.example", "the bad host alone is dropped")
        assert(clean.blurhash_components[1] == 5 and math.type(clean.blurhash_components[2]) == "integer")
        assert(clean.deadline == 5 and clean.max_urls == 4, "every option is in clean, with its default")
        assert(clean.user_agent:match("^mod_muc_media_metadata/"), clean.user_agent)
        assert(#refused == 4, "refusals: " .. #refused)
        local h, a, t, th = refused[1], refused[2], refused[3], refused[4] -- by name
        assert(a.name == "alow_private" and a.value == true and a.expected == "a known option"
            and a.default == nil and a.entry == nil)
        assert(h.name == "allow_hosts" and h.value == "bad host" and h.entry == 2
            and h.expected == "a host name" and h.default == nil)
        assert(th.name == "timeout" and th.value == 129600
            and th.expected == "a number of seconds above 0, at most 600" and th.default == 10)
        assert(t.name == "threads" and t.value == 0 and t.expected == "an integer from 1 to 64"
            and t.default == 2, t.name)
        -- The refused value is the Lua value itself, not a copy of it.
        local f = function () end
        local _, r = mm.check_options({ user_agent = f, blurhash_components = { 10, 3 } })
        assert(r[1].name == "blurhash_components" and r[1].value[1] == 10
            and r[1].default[1] == 4 and r[1].default[2] == 3)
        assert(r[2].name == "user_agent" and r[2].value == f
            and r[2].expected == "a non-empty string of printable ASCII" and type(r[2].default) == "string")
        -- A table that is not an array is refused whole; nil is all defaults.
        for _, hosts in ipairs({ { x = "a.example" }, { "a.example", nil, "c.example" } }) do
            local _, s = mm.check_options({ deny_hosts = hosts })
            assert(#s == 1 and s[1].name == "deny_hosts" and s[1].entry == nil and #s[1].default == 0)
        end
        local d, none = mm.check_options(nil)
        assert(#none == 0 and d.threads == 2)
        -- What check_options accepts, new_pool takes: the plugin passes `clean` on.
        local pool = mm.new_pool(clean)
        pool:close()
        "#,
        "",
    );
}

#[test]
fn option_names_is_every_option_sorted() {
    run(
        r#"
        local n = mm.option_names
        assert(#n == 17, #n)
        for i = 2, #n do assert(n[i - 1] < n[i], n[i]) end
        local seen = {}
        for _, name in ipairs(n) do seen[name] = true end
        for _, name in ipairs({ "threads", "queue_length", "deadline", "connect_timeout", "timeout",
            "max_bytes", "max_pixels", "max_redirects", "max_urls", "blurhash_components",
            "allow_private", "allow_hosts", "deny_hosts", "cache_size", "cache_ttl", "user_agent",
            "formats" }) do
            assert(seen[name], name)
        end
        local clean = mm.check_options({})
        for _, name in ipairs(n) do assert(clean[name] ~= nil, name) end
        "#,
        "",
    );
}

#[test]
fn formats_reach_lua_clean_and_their_bad_entries_refused() {
    run(
        r#"
        local clean, refused = mm.check_options({})
        assert(#clean.formats == 3 and clean.formats[1] == "metadata" and clean.formats[2] == "sfs"
            and clean.formats[3] == "sims" and #refused == 0)
        clean, refused = mm.check_options({ formats = { "sims", "xhtml", "metadata" } })
        assert(#clean.formats == 2 and clean.formats[1] == "metadata" and clean.formats[2] == "sims")
        assert(#refused == 1 and refused[1].name == "formats" and refused[1].entry == 2
            and refused[1].value == "xhtml" and refused[1].default == nil
            and refused[1].expected == 'one of "metadata", "sfs", "sims"', refused[1].expected)
        clean, refused = mm.check_options({ formats = {} })
        assert(#clean.formats == 3 and #refused == 1 and refused[1].entry == nil and #refused[1].default == 3)
        "#,
        "",
    );
}

#[test]
fn the_file_share_fields_reach_lua() {
    let bytes = jpeg(&photo(64, 48));
    let mut raw = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\
         Content-Disposition: attachment; filename=\"../shot.jpg\"\r\n\
         Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
        bytes.len()
    )
    .into_bytes();
    raw.extend(&bytes);
    let s = Server::start(vec![("/p.jpg", Reply::Raw(raw)), ("/q.jpg", Reply::Ok("image/jpeg", bytes))]);
    let base = s.url("");
    run(
        r#"
        local m = assert(mm.analyze(base .. "/p.jpg", { allow_private = true }))
        assert(m.name == "shot.jpg" and m.date == "1994-11-06T08:49:37Z", tostring(m.name))
        assert(#m.sha256 == 44 and m.sha256:match("^[A-Za-z0-9+/]+=$"), m.sha256)
        assert(m.thumbhash:match("^[A-Za-z0-9+/]+=*$") and m.thumbnail:match("^iVBORw0KGgo"), m.thumbnail)
        assert(m.thumbnail_width == 8 and m.thumbnail_height == 6, m.thumbnail_height)
        assert(math.type(m.thumbnail_width) == "integer")
        m = assert(mm.analyze(base .. "/q.jpg", { allow_private = true, formats = { "metadata" } }))
        assert(m.name == "q.jpg" and m.date == nil and m.blurhash)
        assert(m.sha256 == nil and m.thumbhash == nil and m.thumbnail == nil and m.thumbnail_width == nil)
        "#,
        &base,
    );
}

#[test]
fn new_pool_and_analyze_raise_on_a_bad_value_through_the_same_check() {
    run(
        r#"
        local ok, err = pcall(mm.new_pool, { threads = 0 })
        assert(not ok and tostring(err):find("invalid option threads: expected an integer from 1 to 64, got 0", 1, true), tostring(err))
        ok, err = pcall(mm.new_pool, { cache_ttl = 2592001 })
        assert(not ok and tostring(err):find("at most 2592000", 1, true), tostring(err))
        ok, err = pcall(mm.analyze, "http://x/", { alow_private = true })
        assert(not ok and tostring(err):find("invalid option alow_private: unknown option", 1, true), tostring(err))
        local pool
        ok, pool = pcall(mm.new_pool, { cache_ttl = 1.5 * 86400, cache_size = 1048576.0, queue_length = 65536 })
        assert(ok, tostring(pool))
        pool:close()
        "#,
        "",
    );
}

#[test]
fn errors_reach_lua_with_their_kind() {
    let s = Server::start(vec![("/p.png", Reply::Ok("image/png", png(&photo(16, 8))))]);
    let base = s.url("");
    run(
        r#"
        local m, err, kind = mm.analyze("ftp://media.example/a.png")
        assert(m == nil and err == 'refused: scheme "ftp" is not http or https' and kind == "refused", err)
        m, err, kind = mm.analyze(base .. "/p.png")
        assert(m == nil and err == "refused: 127.0.0.1 is loopback" and kind == "refused", err)
        m, err, kind = mm.analyze(base .. "/missing", { allow_private = true })
        assert(m == nil and kind == "http_status" and err:find("HTTP 404", 1, true), err)
        m, err, kind = mm.analyze("http://", { allow_private = true })
        assert(kind == "bad_url", kind)
        m = assert(mm.analyze(base .. "/p.png", { allow_private = true }))
        assert(m.width == 16 and m.height == 8)

        local pool = mm.new_pool({ threads = 1, queue_length = 1, allow_private = true })
        local ok_id = assert(pool:submit(base .. "/p.png"))
        local _, qerr, qkind = pool:submit(base .. "/p.png")
        -- The worker may have taken the first job already; then the queue had room.
        if qerr then assert(qerr == "queue full" and qkind == "queue_full", qerr) end
        local results = {}
        local function wait_for(id)
            for _ = 1, 500 do
                for _, c in ipairs(pool:drain()) do results[c.id] = c end
                if results[id] then return results[id] end
                os.execute("sleep 0.01")
            end
            error("no completion for " .. id)
        end
        local c = wait_for(ok_id)
        assert(c.result and c.result.width == 16 and c.err == nil and c.kind == nil and c.cached == nil)
        c = wait_for(assert(pool:submit(base .. "/p.png")))
        assert(c.cached == true and c.result.width == 16, "a repeated URL is answered from the cache")
        local bad = assert(pool:submit(base .. "/missing"))
        c = wait_for(bad)
        assert(c.result == nil and c.kind == "http_status" and c.err:find("HTTP 404", 1, true), c.err)
        pool:close()
        local none, cerr, ckind = pool:submit(base .. "/p.png")
        assert(none == nil and cerr == "the pool is closed" and ckind == "closed", cerr)

        local h, berr, bkind = mm.blurhash_decode("xyz", 4, 4)
        assert(h == nil and bkind == "bad_blurhash", berr)
        "#,
        &base,
    );
}

#[test]
fn pool_cancel_from_lua() {
    let s = Server::start(vec![("/hang", Reply::Hang), ("/p.png", Reply::Ok("image/png", png(&photo(16, 8))))]);
    let base = s.url("");
    run(
        r#"
        local pool = mm.new_pool({ threads = 1, allow_private = true, timeout = 0.5 })
        local hung = assert(pool:submit(base .. "/hang"))
        os.execute("sleep 0.1")
        local queued = assert(pool:submit(base .. "/p.png"))
        assert(pool:cancel(queued) == true, "a queued job is pending")
        assert(pool:cancel(12345) == false, "an unknown id")
        local results = {}
        for _ = 1, 500 do
            for _, c in ipairs(pool:drain()) do results[c.id] = c end
            if results[hung] and results[queued] then break end
            os.execute("sleep 0.01")
        end
        local c = assert(results[queued], "no completion for the cancelled job")
        assert(c.result == nil and c.err == "analysis cancelled" and c.kind == "cancelled", c.err)
        assert(results[hung].kind == "timeout", results[hung].kind)
        assert(pool:cancel(queued) == false, "drained: no longer pending")
        pool:close()
        "#,
        &base,
    );
    assert_eq!(s.hits.lock().unwrap().get("/p.png"), None, "the cancelled job was fetched");
}
