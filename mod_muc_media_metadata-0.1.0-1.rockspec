-- Build from a checkout:  luarocks --lua-version 5.4 make --tree TREE
-- Pack a binary rock:     luarocks --lua-version 5.4 make --pack-binary-rock --tree TREE
-- (then `prosodyctl install /full/path/to/mod_muc_media_metadata-0.1.0-1.linux-x86_64.rock`:
-- prosodyctl changes to the data directory first, so "./" would not be found)
rockspec_format = "3.0"
package = "mod_muc_media_metadata"
version = "0.1.0-1"
source = {
	-- `luarocks make` builds the checkout it is run in and never fetches this.
	url = "git+file://./",
}
description = {
	summary = "Size, type, dimensions, hash and thumbnails for media shared in Prosody MUC rooms",
	detailed = [[
When an occupant shares a URL (XEP-0066 jabber:x:oob) in a multi-user chat, the server
fetches it on a worker thread and adds <metadata xmlns="xmpp:prosody.im/protocol/media-metadata#0">
with bytes, type, width, height and a BlurHash before the room broadcasts and archives it.
The fetching and decoding are a Rust library; building needs cargo (a stable Rust toolchain).
]],
	license = "MIT",
	labels = { "prosody", "xmpp", "muc", "blurhash" },
}
dependencies = {
	"lua >= 5.4, < 5.5",
}
build = {
	type = "command",
	-- LuaRocks installs a lib under its file's own name: give it the one Lua looks for.
	-- LuaRocks sets CC=gcc for the command; ring's build script would then be rerun (it
	-- watches CC), and target/ rebuilt, each time a plain `cargo build` alternates with this.
	build_command = "env -u CC cargo build --release --locked && cp target/release/libmedia_metadata.so target/release/media_metadata.so",
	install = {
		-- Prosody finds TREE/share/lua/5.4/mod_muc_media_metadata.lua on its plugin path, and
		-- module:require "media_metadata_stanzas" finds the stanza builders in
		-- TREE/share/lua/5.4/mod_muc_media_metadata/media_metadata_stanzas.lua (LuaRocks names
		-- a module's file after the last part of its name: the ".lib" is dropped, and Prosody's
		-- loader tries "name.lua" after "name.lib.lua").
		lua = {
			mod_muc_media_metadata = "lua/mod_muc_media_metadata.lua",
			["mod_muc_media_metadata.media_metadata_stanzas"] = "lua/media_metadata_stanzas.lib.lua",
		},
		-- Prosody does not put TREE/lib/lua/5.4 on package.cpath; the plugin loads it from there.
		lib = { media_metadata = "target/release/media_metadata.so" },
	},
}
