"""Reference token ids from transformers' CLIPTokenizer -> Tests/Fixtures/tokenizer/cases.json.

transformers 5.23's `CLIPTokenizer` is the tokenizers-backed (Rust) implementation: normalizer
NFC -> Replace(\\s+ -> " ") -> Lowercase, pre-tokenizer Split(CLIP regex, removed, inverted) ->
ByteLevel(use_regex=True), BPE with end_of_word_suffix "</w>", RobertaProcessing post-processor.
It does NOT run ftfy nor html.unescape (OpenAI CLIP / open_clip do): the cases tagged "ftfy_html"
record both transformers' ids and open_clip's, to document the difference.

For every string and every folder it stores, for
    tokenizer(text, padding="max_length", max_length=77, truncation=True)
the input_ids and attention_mask, plus the untruncated token count len(tokenizer(text).input_ids);
and "openai_short": the same call with max_length=8 on the openai folder.

Folders:
  openai   weights/clip-tokenizer              pad <|endoftext|>
  sd2      weights/clip-tokenizer-sd2          pad "!" (id 0). "!" becomes a special added token, so
                                               every "!" in the text is split out as id 0.
  legacy   Tests/Fixtures/tokenizer/legacy-sd2-config + vocab/merges of clip-tokenizer-sd2:
           configs as the stable-diffusion-2 / stable unCLIP checkpoints ship them (special tokens as
           AddedToken dicts with normalized=true, tokenizer_config pad <|endoftext|> overridden by
           special_tokens_map pad "!"). normalized=true makes "<|ENDOFTEXT|>" match the special token.
  The tokenizer.json-only fixture folder is checked here to give ids identical to "openai".

Needs ftfy for the open_clip comparison: pip install --target /tmp/pylib ftfy; PYTHONPATH=/tmp/pylib.
Run: PYTHONPATH=/tmp/pylib venv/bin/python notebooks-export/fixtures_tokenizer.py
"""
import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
import unicodedata

import transformers
from transformers import CLIPTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer")
SITE = os.path.dirname(os.path.dirname(os.path.abspath(transformers.__file__)))
MAX_LEN = 77
SHORT_LEN = 8

# --------------------------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------------------------
BASIC = [
    "", " ", "   ", "\t", "\n", "\r\n", " \t\n\r\x0b\x0c ", "\u00a0", "\u3000", "\u2028\u2029",
    "a", "A", "cat", "a photo of a cat", "A PHOTO OF A CAT", "a Photo oF a CaT", "  leading and trailing  ",
    "multiple   spaces\tand\ttabs\nand\nnewlines\r\nwindows", "line1\n\n\nline2", "tab\tseparated\tvalues",
    "hello, world!", "hello,world", "hello...world", "wait... what?!", "?!?!?!", "!!!", "!", "!!", "hi!", "!hi",
    "...", "---", "***", "(((masterpiece)))", "[[[bracketed]]]", "{curly}", "<angle>", "a,b;c:d", "@user #hashtag $100 %50 ^_^",
    "~!@#$%^&*()_+`-=[]\\{}|;':\",./<>?", "emoji :) :-( ;P <3", "-_-", "o_O", "¯\\_(ツ)_/¯",
    "0", "7", "42", "2024", "3.14159", "1,000,000", "1234567890123456789012345678901234567890", "007 agent",
    "4k 8k 16k", "1920x1080", "v1.5", "sd-2.1", "50%", "+1 -1", "12:30pm", "2024-01-31", "phone: +1 (555) 010-9999",
    "it's", "It's", "IT'S", "'s", "'S", "'ll", "'LL", "'d", "'re", "'ve", "'m", "'t", "don't", "DON'T", "won't", "y'all",
    "we'll", "they're", "I've", "I'm", "you'd", "o'clock", "rock 'n' roll", "''s", "'''", "'sup", "'twas", "the cat's toy",
    "dogs' bowls", "it’s curly", "don‘t", "l'homme", "' s", "'", "''", "`backtick`",
    "café", "CAFÉ", "naïve", "NAÏVE", "résumé", "crème brûlée", "Zürich", "São Paulo", "Ærøskøbing", "Straße", "STRASSE",
    "ẞ", "İstanbul", "ıi", "Ǆ ǅ ǆ", "ﬁne ﬂowers", "Ω Å K", "ΣΑΣ σας", "Москва", "ПРИВЕТ мир", "Ελληνικά", "Ꭰ Ꮳ", "Ა ა",
    "cafe\u0301", "nai\u0308ve", "e\u0301\u0301", "q\u0303", "\u0301alone", "a\u0328\u0301", "Z\u0351\u0362a\u0315l\u0367g\u0350o",
    "\u1100\u1161\u11a8", "한국어 텍스트", "東京タワー", "北京天安门", "日本語のテキストです。", "ひらがな カタカナ ｶﾀｶﾅ", "漢字かなMixed",
    "中文，标点。", "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ", "１２３", "Ⅻ ½ ² ³", "١٢٣ ٤٥٦", "مرحبا بالعالم", "שלום עולם", "हिन्दी पाठ", "ภาษาไทย",
    "ქართული", "Tiếng Việt có dấu", "Ελληνικά ΑΒΓ", "𝕳𝖊𝖑𝖑𝖔 𝒘𝒐𝒓𝒍𝒅", "𐐀𐐨 Deseret", "𞤀𞤢 Adlam",
    "🐱", "🐱🐶", "a 🐱 cat", "😀😃😄😁", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵🇫🇷", "❤️", "❤", "✨ sparkles ✨", "🔥🔥🔥 fire",
    "🧑🏿‍🚀 astronaut", "©®™", "→ ← ↑ ↓", "•·°±×÷", "“smart quotes”", "‘single’", "«guillemets»", "— em dash – en dash",
    "…", "€100 £50 ¥1000", "\x00", "a\x00b", "\x1f\x1c", "a\x7fb", "\u200b", "a\u200bb", "a\u200db", "a\ufeffb", "\ue000 private",
    "\u180e", "a\u0085b", "a\u1680b", "a\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200ab", "a\u202fb\u205fc",
    "&amp;", "&lt;b&gt;bold&lt;/b&gt;", "Tom &amp; Jerry", "&amp;amp;", "&#39;quoted&#39;", "&quot;hi&quot;", "&nbsp;",
    "https://example.com/path?query=1&x=y#frag", "www.example.org", "user@example.com", "C:\\Users\\name\\file.txt",
    "/usr/local/bin", "snake_case_name", "camelCaseName", "kebab-case-name", "SCREAMING_CASE", "a.b.c.d", "#1 best",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "zzzzzzzzzzzzzzzzzzzzzzz", "hahahahahahahahahaha",
    "lolololololololol", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", "................................", "ababababababababab",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch", "antidisestablishmentarianism",
    "xqzjvkw", "qwertyuiopasdfghjklzxcvbnm", "thequickbrownfoxjumpsoverthelazydog",
    "<|startoftext|>", "<|endoftext|>", "<|startoftext|>a photo<|endoftext|>", "a<|endoftext|>b", " <|endoftext|> ",
    "<|ENDOFTEXT|>", "<|EndOfText|> mixed", "<|startoftext|>|>", "<|endoftext", "|endoftext|>", "<|endoftext|><|endoftext|>",
    "<|startoftext|>!<|endoftext|>", "<start_of_text>", "<s></s>", "<pad>", "</w>", "a</w>b",
]

SD_PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "an astronaut riding a horse on mars, trending on artstation, 8k",
    "A fantasy landscape, trending on artstation",
    "portrait of a beautiful woman, highly detailed, digital painting, artstation, concept art, smooth, sharp focus, illustration, art by artgerm and greg rutkowski and alphonse mucha",
    "a cute corgi wearing a red beret, studio lighting, 85mm, f/1.8, bokeh",
    "masterpiece, best quality, (ultra-detailed:1.2), 1girl, solo, long hair, looking at viewer",
    "(worst quality, low quality:1.4), lowres, bad anatomy, bad hands, text, error, missing fingers",
    "cyberpunk city at night, neon lights, rain, reflections, blade runner style, octane render, unreal engine 5",
    "oil painting of a ship in a storm by Ivan Aivazovsky",
    "a bowl of ramen, food photography, top-down view, 4k, hdr",
    "isometric low-poly island, pastel colors, 3D render, blender",
    "watercolor painting of a fox in a snowy forest",
    "A red sports car driving through the desert at sunset; cinematic, anamorphic lens flare",
    "logo of a coffee shop called \"Bean There\", minimalist, vector",
    "photo of a cat wearing sunglasses on the beach, 35mm film, kodak portra 400",
    "the Eiffel Tower made of LEGO bricks, tilt-shift photography",
    "a painting of a fox sitting in a field at sunrise in the style of Claude Monet",
    "a teddy bear on a skateboard in times square",
    "an armchair in the shape of an avocado",
    "a Shiba Inu dog wearing a beret and black turtleneck",
    "ultra realistic photo of a dragon perched on a castle, golden hour, volumetric lighting, 8K UHD, DSLR, film grain",
    "steampunk airship above victorian london, intricate, elegant, highly detailed, matte painting",
    "Studio Ghibli style village by the sea, anime, cel shading",
    "macro shot of a dew drop on a leaf, shallow depth of field",
    "a high-resolution photo of a futuristic kitchen, interior design, architectural digest",
    "pixel art of a knight fighting a slime, 16-bit, snes",
    "a vase of sunflowers, Van Gogh style, thick impasto brushstrokes",
    "black and white photo of New York in the 1920s",
    "an otter floating on its back holding a seashell, national geographic",
    "concept art of an alien jungle planet with two moons, by Syd Mead",
    "A cozy cabin in the woods, snow, warm light from the windows, christmas, hyperrealistic",
    "ink drawing of a samurai, sumi-e, minimal",
    "a robot painting a self-portrait, surrealism, Salvador Dalí",
    "flat lay of vintage cameras on a wooden table",
    "underwater city with bioluminescent jellyfish, deep sea, mysterious",
    "1980s synthwave sunset over a grid, retrowave, VHS",
    "close-up portrait of an old fisherman, wrinkles, Rembrandt lighting",
    "bowl of fruit, still life, Cézanne",
    "a girl with a pearl earring, Vermeer, 4k restoration",
    "hyper detailed photo of a mechanical butterfly, brass gears, steampunk, macro",
    "(beautiful girl:1.3), [[blurry]], {masterpiece}, <lora:detail:0.8>, BREAK, by wlop",
    "a cat, a dog, a bird, a fish, a horse, a cow, a pig, a sheep, a goat, a chicken",
]

LONG_PROSE = (
    "In the beginning the Universe was created. This has made a lot of people very angry and been widely regarded "
    "as a bad move. Many were increasingly of the opinion that they'd all made a big mistake in coming down from "
    "the trees in the first place. And some said that even the trees had been a bad move, and that no one should "
    "ever have left the oceans. Far out in the uncharted backwaters of the unfashionable end of the western spiral "
    "arm of the Galaxy lies a small unregarded yellow sun. Orbiting this at a distance of roughly ninety-two million "
    "miles is an utterly insignificant little blue green planet whose ape-descended life forms are so amazingly "
    "primitive that they still think digital watches are a pretty neat idea."
)

FTFY_HTML = [
    ("&amp;", "html.unescape -> '&'"),
    ("Tom &amp; Jerry", "html.unescape -> 'Tom & Jerry'"),
    ("&amp;amp;", "open_clip unescapes twice -> '&'"),
    ("&lt;b&gt;bold&lt;/b&gt;", "html.unescape -> '<b>bold</b>'"),
    ("&#39;quoted&#39;", "html.unescape -> \"'quoted'\""),
    ("&quot;hi&quot;", "html.unescape -> '\"hi\"'"),
    ("&nbsp;", "html.unescape -> U+00A0 (whitespace)"),
    ("cafÃ©", "ftfy fixes mojibake -> 'café'"),
    ("â€œquotedâ€\x9d", "ftfy fixes mojibake -> quotes"),
    ("“smart quotes”", "ftfy uncurls quotes -> '\"smart quotes\"'"),
    ("it’s curly", "ftfy uncurls apostrophe -> \"it's\" (then 's contraction)"),
    ("ﬁne ﬂowers", "ftfy expands ligatures -> 'fine flowers'"),
    ("ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ", "ftfy fixes character width -> 'FULLWIDTH text'"),
    ("ｶﾀｶﾅ", "ftfy half-width katakana -> full width"),
    ("a\x1fb", "Python str.split treats U+001F as whitespace; tokenizers' \\s does not"),
    ("\x1c\x1d\x1e", "Python str.split whitespace, not Unicode White_Space"),
    ("e\u0301", "NFC composes -> 'é' in both"),
    ("line\r\nbreak", "whitespace collapsed in both"),
]

FTFY_NOTES = dict(FTFY_HTML)

WHITESPACE_CHARS = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B)) + [
    0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
NOT_WHITESPACE_CHARS = [0x1C, 0x1D, 0x1E, 0x1F, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD]
# Single characters whose lowercase / NFC / category handling is worth pinning down.
SPECIAL_CHARS = [0x130, 0x131, 0x149, 0x1C5, 0x1F0, 0x390, 0x3A3, 0x3C2, 0x3D2, 0x3F4, 0x1E9E, 0x1F88, 0x1FBC, 0x2126,
                 0x212A, 0x212B, 0x2160, 0x216F, 0x24B6, 0x13A0, 0x13F5, 0xAB70, 0x10A0, 0x1C90, 0x10400, 0x1E900,
                 0x0345, 0x0370, 0x2C00, 0xA640, 0xFF21, 0x1D400, 0x00B2, 0x00BD, 0x0660, 0x0966, 0x2460, 0x3007,
                 0x16EE, 0x0E50, 0xFF10, 0x1F100, 0x0378, 0xE000, 0xF8FF, 0x1F3FB, 0xFE0F, 0x20E3, 0x0640, 0x02B0]


def length_cases(tok):
    """Texts whose untruncated length (with BOS/EOS) hits 75..80, 100, 150, 300, ~1000 tokens."""
    out = []
    for n in (75, 76, 77, 78, 79, 80, 100, 150, 300):
        out.append("cat " * (n - 2))  # "cat</w>" is one token
    words = LONG_PROSE.split()
    # Prose prefixes with exact token counts around the limit (multi-token words straddle the cut).
    want = {75, 76, 77, 78, 79}
    for k in range(1, len(words) + 1):
        text = " ".join(words[:k])
        count = len(tok(text)["input_ids"])
        if count in want:
            want.discard(count)
            out.append(text)
    out.append(LONG_PROSE)
    out.append(LONG_PROSE * 6)  # ~1000 tokens
    # A multi-token word straddling positions 76/77.
    for pre in (72, 73, 74, 75):
        out.append("dog " * pre + "supercalifragilisticexpialidocious and more")
    out.append("<|endoftext|> " * 80)
    out.append("! " * 76)
    out.append("!" * 200)
    out.append("🐱" * 60)
    out.append("東京" * 50)
    out.append(", ".join(SD_PROMPTS[:6]))
    return out


def combo_cases(n):
    """Deterministic random mixtures of fragments from the hand-written lists."""
    rng = random.Random(20240531)
    pool = [s for s in BASIC if s] + SD_PROMPTS
    seps = [" ", "", ", ", "\n", "\t", "  ", "!", "'s ", "-"]
    out = []
    for _ in range(n):
        k = rng.randint(2, 5)
        parts = [rng.choice(pool) for _ in range(k)]
        text = parts[0]
        for p in parts[1:]:
            text += rng.choice(seps) + p
        if rng.random() < 0.3:
            text = text.upper()
        out.append(text)
    return out


def all_cases(tok):
    cases = []
    for s in BASIC:
        cases.append((s, "basic"))
    for s in SD_PROMPTS:
        cases.append((s, "sd_prompt"))
    for s, _ in FTFY_HTML:
        cases.append((s, "ftfy_html"))
    for c in WHITESPACE_CHARS:
        cases.append((f"x{chr(c)}y", f"whitespace U+{c:04X}"))
    for c in NOT_WHITESPACE_CHARS:
        cases.append((f"x{chr(c)}y", f"not whitespace U+{c:04X}"))
    for c in SPECIAL_CHARS:
        cases.append((f"a{chr(c)}b {chr(c)}", f"char U+{c:04X} {unicodedata.name(chr(c), '?')}"))
    for s in length_cases(tok):
        cases.append((s, "length"))
    for s in combo_cases(90):
        cases.append((s, "combo"))
    # Deduplicate, keep order.
    seen, unique = set(), []
    for s, kind in cases:
        if s not in seen:
            seen.add(s)
            unique.append((s, kind))
    return unique


# --------------------------------------------------------------------------------------------
def open_clip_tokenizer():
    import ftfy  # noqa: F401  (required: documents what open_clip does to these strings)

    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", os.path.join(SITE, "open_clip", "tokenizer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer()


def legacy_folder(tmp):
    """vocab/merges of the SD2 folder + the committed legacy configs."""
    src = os.path.join(FIX, "legacy-sd2-config")
    os.makedirs(src, exist_ok=True)
    tok_obj = lambda c: {"__type": "AddedToken", "content": c, "lstrip": False, "normalized": True, "rstrip": False,
                         "single_word": False}
    map_obj = lambda c: {"content": c, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    config = {"add_prefix_space": False, "bos_token": tok_obj("<|startoftext|>"), "do_lower_case": True,
              "eos_token": tok_obj("<|endoftext|>"), "errors": "replace", "model_max_length": 77,
              "name_or_path": "stabilityai/stable-diffusion-2", "pad_token": "<|endoftext|>",
              "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer",
              "unk_token": tok_obj("<|endoftext|>")}
    stmap = {"bos_token": map_obj("<|startoftext|>"), "eos_token": map_obj("<|endoftext|>"), "pad_token": "!",
             "unk_token": map_obj("<|endoftext|>")}
    with open(os.path.join(src, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(src, "special_tokens_map.json"), "w") as f:
        json.dump(stmap, f, indent=2)
        f.write("\n")
    dst = os.path.join(tmp, "legacy")
    shutil.copytree(src, dst)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(ROOT, "weights", "clip-tokenizer-sd2", name), dst)
    return dst


def main():
    tmp = tempfile.mkdtemp()
    toks = {
        "openai": CLIPTokenizer.from_pretrained(os.path.join(ROOT, "weights", "clip-tokenizer")),
        "sd2": CLIPTokenizer.from_pretrained(os.path.join(ROOT, "weights", "clip-tokenizer-sd2")),
        "legacy": CLIPTokenizer.from_pretrained(legacy_folder(tmp)),
    }
    json_only = CLIPTokenizer.from_pretrained(os.path.join(FIX, "tokenizer-json-only"))
    assert toks["legacy"].pad_token == "!" and toks["sd2"].pad_token_id == 0 and toks["openai"].pad_token_id == 49407
    oc = open_clip_tokenizer()

    cases = all_cases(toks["openai"])
    assert len(cases) >= 300, len(cases)
    records = []
    for text, kind in cases:
        rec = {"text": text, "kind": kind}
        for name, tok in toks.items():
            enc = tok(text, padding="max_length", max_length=MAX_LEN, truncation=True)
            full = tok(text)["input_ids"]
            assert len(enc["input_ids"]) == MAX_LEN
            rec[name] = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "token_count": len(full)}
        # A short max_length exercises truncation on nearly every string.
        short = toks["openai"](text, padding="max_length", max_length=SHORT_LEN, truncation=True)
        rec["openai_short"] = {"input_ids": short["input_ids"], "attention_mask": short["attention_mask"]}
        # tokenizer.json-only folder must agree with the vocab.json/merges.txt folder.
        assert json_only(text, padding="max_length", max_length=MAX_LEN, truncation=True)["input_ids"] == \
            rec["openai"]["input_ids"], text
        if text in FTFY_NOTES:
            note = FTFY_NOTES[text]
            oc_ids = [oc.sot_token_id] + oc.encode(text) + [oc.eot_token_id]
            same = oc_ids == toks["openai"](text)["input_ids"]
            rec["note"] = (f"{note}. transformers 5.23 applies neither ftfy nor html.unescape; "
                           f"open_clip ids {'match' if same else 'differ'}")
            rec["open_clip_ids_untruncated"] = oc_ids
        records.append(rec)

    out = {
        "generator": "notebooks-export/fixtures_tokenizer.py",
        "transformers_version": transformers.__version__,
        "call": 'tokenizer(text, padding="max_length", max_length=77, truncation=True); token_count = len(tokenizer(text).input_ids)',
        "max_length": MAX_LEN,
        "short_max_length": SHORT_LEN,
        "folders": {"openai": "weights/clip-tokenizer", "sd2": "weights/clip-tokenizer-sd2",
                    "legacy": "Tests/Fixtures/tokenizer/legacy-sd2-config + vocab.json/merges.txt of weights/clip-tokenizer-sd2"},
        "cases": records,
    }
    path = os.path.join(FIX, "cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"))
    shutil.rmtree(tmp)

    n_long = sum(1 for r in records if r["openai"]["token_count"] > MAX_LEN)
    n_diff_sd2 = sum(1 for r in records if r["sd2"]["input_ids"][: r["sd2"]["token_count"]] != r["openai"]["input_ids"][: r["openai"]["token_count"]])
    n_diff_legacy = sum(1 for r in records if r["legacy"]["input_ids"] != r["sd2"]["input_ids"])
    print(f"{len(records)} cases -> {path} ({os.path.getsize(path)} bytes); {n_long} longer than {MAX_LEN}; "
          f"sd2 ids differ from openai (before padding) in {n_diff_sd2}; legacy differs from sd2 in {n_diff_legacy}")
    for r in records:
        if "note" in r:
            print(" ", repr(r["text"]), "->", r["note"])
    counts = sorted({r["openai"]["token_count"] for r in records if r["kind"] == "length"})
    print("length-case token counts:", counts)


if __name__ == "__main__":
    main()
