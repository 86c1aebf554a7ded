-- The native library from Lua 5.4, against real images on a real HTTP server (127.0.0.1).
-- Needs media_metadata.so on package.cpath (scripts/test arranges it) and a Python with
-- Pillow ($PYTHON, default .venv/bin/python) for the media server.

local mm = require "media_metadata";

local python = os.getenv("PYTHON") or ".venv/bin/python";

local function to_srgb(v)
	v = math.max(0, math.min(1, v));
	return (v <= 0.0031308 and v * 12.92 or 1.055 * v ^ (1 / 2.4) - 0.055) * 255;
end

local BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

local function base83(s)
	local v = 0;
	for i = 1, #s do v = v * 83 + BASE83:find(s:sub(i, i), 1, true) - 1; end
	return v;
end

-- A hash's DC term: by BlurHash's definition the picture's mean colour in linear light,
-- written in sRGB. (Painting the hash and averaging would add the AC terms, which do not
-- average to zero on a grid: the reference basis is cos(pi*i*x/w), not a centred DCT.)
local function mean_of(hash)
	local v = base83(hash:sub(3, 6));
	return { v >> 16, (v >> 8) & 255, v & 255 };
end

-- Two sRGB levels (of 255): the shrink's rounding and, for JPEG, the scaled decode; far
-- below what a wrong orientation, a lost frame or a black background would give.
local TOLERANCE = 2;

describe("media_metadata from Lua", function ()
	local media, server;

	setup(function ()
		local path = os.tmpname();
		os.remove(path);
		server = assert(io.popen(("%q spec/media_fixture.py %q"):format(python, path), "w"));
		for _ = 1, 300 do
			local f = io.open(path);
			if f then f:close(); break; end
			os.execute("sleep 0.1");
		end
		media = assert(dofile(path), "the media server did not start");
	end);

	teardown(function ()
		if server then server:close(); end
	end);

	local allow = { allow_private = true };

	it("reports the truth about every image", function ()
		for name, truth in pairs(media) do
			if truth.width then
				local m, err = mm.analyze(truth.url, allow);
				assert.is_nil(err, name);
				assert.equal(truth.size, m.bytes, name);
				assert.equal(truth.type, m.type, name);
				assert.equal(truth.width, m.width, name);
				assert.equal(truth.height, m.height, name);
				assert.equal(4 + 2 * 4 * 3, #m.blurhash, name);
				-- The URL's last segment; the hash of the whole body, as a client checks it.
				assert.same({ name, truth.sha256 }, { m.name, m.sha256 }, name);
				-- The tiny PNG: 8 px on the long side, the upright picture's aspect.
				local long, short = math.max(truth.width, truth.height), math.min(truth.width, truth.height);
				local tw, th = m.thumbnail_width, m.thumbnail_height;
				assert.equal(8, math.max(tw, th), name);
				assert.equal(truth.width >= truth.height, tw >= th, name);
				assert.is_true(math.abs(math.min(tw, th) - 8 * short / long) <= 1, name);
				assert.truthy(m.thumbnail:find("^iVBORw0KGgo"), name); -- base64 of the PNG signature
				assert.truthy(m.thumbhash:find("^[%w+/]+=*$"), name);
				local got = mean_of(m.blurhash);
				for c = 1, 3 do
					local d = math.abs(got[c] - to_srgb(truth.mean[c]));
					assert.is_true(d <= TOLERANCE, ("%s channel %d: %.1f levels off"):format(name, c, d));
				end
			end
		end
	end);

	it("reports type, size, name and hash, and no pixels, for a PDF", function ()
		local pdf = media["doc.pdf"];
		local m = assert(mm.analyze(pdf.url, allow));
		assert.same({ bytes = pdf.size, type = "application/pdf", name = "doc.pdf", sha256 = pdf.sha256 }, m);
	end);

	it("reports a voice note's length in ms, and no pixels", function ()
		local note = media["note.wav"];
		local m = assert(mm.analyze(note.url, allow));
		assert.same({ bytes = note.size, type = "audio/wav", name = "note.wav", sha256 = note.sha256,
			length = note.length }, m);
	end);

	it("says whether a GIF, PNG or WebP is animated, and nothing for a JPEG", function ()
		assert.is_true(assert(mm.analyze(media["anim.gif"].url, allow)).animated);
		assert.is_false(assert(mm.analyze(media["transparent.png"].url, allow)).animated);
		assert.is_false(assert(mm.analyze(media["image.webp"].url, allow)).animated);
		assert.is_nil(assert(mm.analyze(media["photo.jpg"].url, allow)).animated);
	end);

	it("sizes the hash by the configured components", function ()
		local wide = media["photo.jpg"];
		local m = assert(mm.analyze(wide.url, { allow_private = true, blurhash_components = { 5, 2 } }));
		assert.equal(4 + 2 * 5 * 2, #m.blurhash);
		local tall = media["rotated.jpg"]; -- upright it is taller than wide: 2 across, 5 down
		m = assert(mm.analyze(tall.url, { allow_private = true, blurhash_components = { 5, 2 } }));
		local flag = base83(m.blurhash:sub(1, 1));
		assert.same({ 2, 5 }, { flag % 9 + 1, flag // 9 + 1 });
	end);

	it("refuses loopback unless allowed, naming the address", function ()
		local m, err = mm.analyze(media["photo.jpg"].url);
		assert.is_nil(m);
		assert.equal("refused: 127.0.0.1 is loopback", err);
	end);

	it("raises on misuse: unknown options and bad values", function ()
		assert.error_matches(function () mm.analyze("http://x/", { alow_private = true }); end,
			"invalid option alow_private: unknown option", nil, true);
		assert.has_error(function () mm.analyze("http://x/", { blurhash_components = { 10, 3 } }); end);
		assert.has_error(function () mm.analyze("http://x/", { timeout = -1 }); end);
		assert.has_error(function () mm.new_pool({ threads = 0 }); end);
	end);

	it("encodes and decodes BlurHash, and rejects a malformed one", function ()
		local red = ("\255\0\0"):rep(40 * 30);
		local hash = assert(mm.blurhash_encode(red, 40, 30));
		assert.equal(28, #hash);
		local px = assert(mm.blurhash_decode(hash, 4, 4));
		assert.equal(4 * 4 * 4, #px);
		-- Within one level: the blurhash crate's decoder rounds up by half a level.
		local r, g, b, a = px:byte(1, 4);
		assert.same({ true, true, true, 255 }, { r >= 254, g <= 1, b <= 1, a });
		assert.equal(4 + 2 * 2 * 2, #assert(mm.blurhash_encode(red, 40, 30, 2, 2)));
		local none, err = mm.blurhash_decode("LEHV6nWB2yk8pyo0adR*.7kCMdn", 8, 8);
		assert.is_nil(none);
		assert.matches("wrong length", err);
		none, err = mm.blurhash_decode("LEHV6nWB2yk8pyo0adR*.7kCMdnj", 100000, 100000);
		assert.is_nil(none);
		assert.matches("outside", err);
		none, err = mm.blurhash_encode("\0\0\0", 40, 30);
		assert.is_nil(none);
		assert.matches("cannot hold", err);
	end);
end);
