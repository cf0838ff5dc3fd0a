"""Prompt rewriting (paper §3.1.4, §3.6): template rules, invariants, OpenAI and local LM backends."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import typer
from typer.testing import CliRunner

from moviegen.data.world import COLORS, MOTION_PHRASES, World, WorldConfig
from moviegen.errors import MovieGenError
from moviegen.models.text import quoted_text
from moviegen.rewrite import (
    DEFAULT_SYSTEM_PROMPT,
    OpenAIRewriter,
    Rewriter,
    TemplateRewriter,
    TransformersRewriter,
    caption_style,
    load_rewriter,
    rewrite_cli,
    rewrite_prompt,
    rewriter_from_options,
)

T = TemplateRewriter(caption_style("world"))


class Canned:
    """A fake backend that records what it was asked and returns a fixed reply."""

    def __init__(self, reply):
        self.reply, self.seen = reply, []

    def rewrite(self, prompt: str):
        self.seen.append(prompt)
        return self.reply


# --- template backend -------------------------------------------------------------------------------

W = TemplateRewriter(caption_style("world"))


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("red ball moving left", "a red circle moving to the left"),
        ("A blue box falling.", "a blue square moving down"),
        ("a yellow block staying still against black", "a yellow square staying still"),
        ("the cyan wedge travels upward", "a cyan triangle moving up"),
        ("a ball that is not moving", "a circle staying still"),
        ("green triangle", "a green triangle"),
        ("video of a white disc sliding right", "a white circle moving to the right"),
        ("an orange disc drifting upward", "a orange circle moving up"),
        ("a crimson orb gliding from right to left", "a red circle moving to the left"),
        ("Turquoise cube, hovering", "a cyan square staying still"),
        ("hot pink pyramid descending toward the bottom of the frame", "a magenta triangle moving down"),
        ("a cat", "a cat"),
        ("astronaut", "an astronaut"),
        ("a tabby cat looking up", "a tabby cat looking up"),
        ("a kitten", "a cat"),
        ("a cat, the camera pans left", "Camera: pan left. a cat"),
        ("the camera zooms in on an astronaut", "Camera: zoom in. an astronaut"),
        ("tilting upwards over a rocket", "Camera: tilt up. a rocket"),
        ("zooming out from an espresso cup", "Camera: zoom out. a cup of coffee"),
        ("a locked-off shot of a mug of coffee", "Camera: static. a cup of coffee"),
        ("the camera pans up over a spacecraft", "Camera: tilt up. a rocket"),
        ("the camera slowly pushes in on a kitten", "Camera: zoom in. a cat"),
        ("a red ball moving left, with the camera panning right",
         "Camera: pan right. a red circle moving to the left"),
        ("A dog running on the beach", "A dog running on the beach"),
        ("two red balls", "two red balls"),
        ("a black ball", "a black ball"),
        ("Paris at night", "Paris at night"),
        ("a dog with a static camera", "Camera: static. a dog"),
        ("a slow leftward pan across a photo of a cat", "Camera: pan left. a cat"),
        ("an upward tilt over the rocket", "Camera: tilt up. a rocket"),
        ("a downward pan across an astronaut", "Camera: tilt down. an astronaut"),
        ("a jade quadrilateral with four equal sides sinking", "a green square moving down"),
        ("a navy three-cornered shape climbing", "a blue triangle moving up"),
        ("a lilac tri shape at rest", "a magenta triangle staying still"),
        ("four red squares", "four red squares"),
    ],
)  # fmt: skip
def test_template_rewrites_into_the_world_caption_style(prompt, expected):
    assert rewrite_prompt(prompt, W) == expected


def test_template_never_adds_content():
    """No background, lighting, lead-in, camera label or motion the prompt did not ask for."""
    for prompt in ["red ball", "a cat", "A dog running on the beach", "green triangle", 'a sign "Hi"']:
        out = rewrite_prompt(prompt, W).lower()
        for added in ("background", "lighting", "a video of", "camera:", "moving", "scene"):
            assert added not in out or added in prompt.lower(), (prompt, out)


def test_template_without_a_style_only_moves_camera_phrases():
    free = TemplateRewriter()
    assert rewrite_prompt("a red sphere drifts leftward", free) == "a red sphere drifts leftward"
    assert (
        rewrite_prompt("a dog on a beach, the camera pans left", free) == "Camera: pan left. a dog on a beach"
    )
    assert rewrite_prompt("the camera dollies in on a dog", free) == "Camera: dolly in. a dog"


def test_template_is_deterministic_and_idempotent():
    prompts = ["red ball moving left", "a cat, camera pans left", "a dog on a beach", 'a sign "Hi"',
               "a crimson orb gliding from right to left", "zooming out from an espresso cup"]  # fmt: skip
    for rewriter in (W, TemplateRewriter()):
        for p in prompts:
            once = rewrite_prompt(p, rewriter)
            assert rewrite_prompt(p, type(rewriter)(rewriter.style)) == once
            assert rewrite_prompt(once, rewriter) == once


def test_template_uses_world_words_for_every_synonym():
    shapes = {"circle": ["circle", "ball", "disc", "sphere", "orb"],
              "square": ["square", "box", "block", "cube"],
              "triangle": ["triangle", "wedge", "pyramid"]}  # fmt: skip
    motions = {"left": "moves left", "right": "travels right", "up": "rising", "down": "falling",
               "still": "resting in place"}  # fmt: skip
    for color in COLORS:
        for shape, words in shapes.items():
            for motion, phrase in motions.items():
                for word in words:
                    out = rewrite_prompt(f"a {color} {word} {phrase}", W)
                    assert out == f"a {color} {shape} {MOTION_PHRASES[motion][0]}"


def test_template_maps_world_training_captions_to_the_same_attributes():
    world = World(WorldConfig.preset("small", frames=2))
    for index in range(40):
        clip = world.clip("train", index)
        out = rewrite_prompt(clip.caption, W)
        if clip.kind == "object":
            a = clip.attributes
            assert out == f"FPS-{clip.fps}. a {a['color']} {a['shape']} {MOTION_PHRASES[a['motion']][0]}"
        else:
            assert out == clip.caption  # photo phrasing and camera prefix kept as trained


def test_template_reads_the_paraphrase_benchmark():
    from moviegen.eval.paraphrase import paraphrase_prompts

    for p in paraphrase_prompts():
        r = W.read(p.prompt)
        got = {"camera": r.camera, "photo": r.subject} if p.kind == "camera" else {
            "color": r.color, "shape": r.shape, "motion": r.motion}  # fmt: skip
        assert got == p.truth, p.prompt


def test_template_reports_what_the_style_cannot_say():
    r = W.read("a glowing red ball bouncing on a trampoline")
    assert (r.color, r.shape, r.in_style) == ("red", "circle", True) and {"bouncing", "trampoline"} <= set(
        r.dropped
    )
    for outside in ("a dog running on a beach", "狗在海滩上跑", "🐶🏖️", "two red balls"):
        assert W.read(outside).in_style is False


def test_template_keeps_motion_to_one_clause():
    out = rewrite_prompt("a red ball slowly, steadily moving left across the screen, sliding left", W)
    assert out == "a red circle moving to the left"


def test_template_does_not_read_world_words_inside_quotes():
    out = rewrite_prompt('a sign that says "red ball moving left"', W)
    assert out == 'a sign that says "red ball moving left"'


# --- invariants of rewrite_prompt ------------------------------------------------------------------------


def test_prefixes_are_kept_verbatim_and_win():
    assert rewrite_prompt("FPS-8. Camera: pan left. a red ball", T) == "FPS-8. Camera: pan left. a red circle"
    assert rewrite_prompt("Camera: zoom in. a cat, the camera pans left", T) == "Camera: zoom in. a cat"
    backend = Canned("FPS-4. Camera: tilt up. a detailed caption")
    assert rewrite_prompt("FPS-8. a short prompt", backend) == "FPS-8. Camera: tilt up. a detailed caption"
    assert backend.seen == ["a short prompt"]
    assert rewrite_prompt("a short prompt", backend) == "Camera: tilt up. a detailed caption"


def test_quoted_text_is_kept_verbatim():
    out = rewrite_prompt('FPS-8. Camera: pan left. a sign that says "Movie Gen"', T)
    assert out == 'FPS-8. Camera: pan left. a sign that says "Movie Gen"'
    prompt = 'a neon sign reading “OPEN” and a poster saying "Hi"'
    assert rewrite_prompt(prompt, T) == prompt
    assert quoted_text(rewrite_prompt(prompt, T)) == "OPEN Hi"


def test_lost_or_altered_quotes_are_put_back():
    prompt = 'FPS-8. a sign that says "Hi there"'
    assert rewrite_prompt(prompt, Canned("A wooden sign on a wall.")) == (
        'FPS-8. A wooden sign on a wall, with the text "Hi there".'
    )
    out = rewrite_prompt(prompt, Canned('A sign that says "HI THERE".'))
    assert out == 'FPS-8. A sign that says HI THERE, with the text "Hi there".'
    assert quoted_text(out) == "Hi there"
    two = rewrite_prompt('"A" and “B” and "A"', Canned('only "A"'))
    assert two == 'only "A", with the text “B” and "A".'
    assert rewrite_prompt("a cat", Canned('"A ginger cat on a sofa."')) == "A ginger cat on a sofa."
    assert rewrite_prompt('"Hi"', Canned('"Hi"')) == '"Hi"'


def test_bad_prompts_and_replies_raise():
    for prompt in ["", "   ", "FPS-8. ", "FPS-8. Camera: pan left.", None]:
        with pytest.raises(MovieGenError):
            rewrite_prompt(prompt, T)
    for reply in ["", "  ", "FPS-8. Camera: pan left. ", '""', None, 3]:
        with pytest.raises(MovieGenError):
            rewrite_prompt("a cat", Canned(reply))


def test_llm_backends_are_told_the_caption_style():
    from moviegen.rewrite import system_prompt

    plain, world = system_prompt(None), system_prompt(caption_style("world"))
    assert plain == DEFAULT_SYSTEM_PROMPT and "add nothing" in plain
    assert world.startswith(plain) and "magenta" in world and "moving to the left" in world
    assert (
        load_rewriter("openai", caption_style("world"), base_url="http://x/v1", model="m").system_prompt
        == world
    )


def test_load_rewriter_and_options():
    assert isinstance(load_rewriter("Template"), TemplateRewriter)
    assert load_rewriter("template", caption_style("world")).style is caption_style("world")
    assert isinstance(load_rewriter("template"), Rewriter)
    with pytest.raises(MovieGenError, match="template, openai, transformers"):
        load_rewriter("gpt")
    with pytest.raises(MovieGenError, match="invalid options"):
        load_rewriter("template", temperature=1)
    with pytest.raises(MovieGenError, match="not found"):
        load_rewriter("transformers", path="/nonexistent/rewriter")
    assert isinstance(rewriter_from_options(), TemplateRewriter)
    rewriter = rewriter_from_options("openai", url="http://127.0.0.1:1/v1/", model="m")
    assert isinstance(rewriter, OpenAIRewriter) and rewriter.url == "http://127.0.0.1:1/v1/chat/completions"
    with pytest.raises(MovieGenError, match="--url and --model"):
        rewriter_from_options("openai")
    with pytest.raises(MovieGenError, match="--path"):
        rewriter_from_options("transformers", model="m")
    with pytest.raises(MovieGenError, match="--url not used"):
        rewriter_from_options("template", url="http://x")
    with pytest.raises(MovieGenError, match="unknown rewriter"):
        rewriter_from_options("nope")
    with pytest.raises(MovieGenError, match="http"):
        OpenAIRewriter("localhost:8000", "m")


# --- OpenAI-compatible backend against a local fake server -----------------------------------------------


@pytest.fixture
def server():
    state = {"requests": [], "mode": "ok", "content": "A red ball rolls to the left across a dark floor."}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append(
                {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
            )
            mode = state["mode"]
            if mode == "slow":
                time.sleep(1.5)
            status, payload = (
                200,
                {"choices": [{"message": {"role": "assistant", "content": state["content"]}}]},
            )
            if mode == "500":
                status, payload = 500, {"error": {"message": "model exploded"}}
            data = (
                b"not json" if mode == "badjson" else json.dumps({} if mode == "empty" else payload).encode()
            )
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_openai_request_and_reply(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server["content"] = '  A wooden sign that says "Movie Gen" on a sunny street.\n'
    rewriter = OpenAIRewriter(server["url"], "tiny-llm", api_key="sk-test")
    out = rewrite_prompt('FPS-8. Camera: pan left. a sign that says "Movie Gen"', rewriter)
    assert out == 'FPS-8. Camera: pan left. A wooden sign that says "Movie Gen" on a sunny street.'
    (request,) = server["requests"]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "tiny-llm" and body["temperature"] == 0
    assert body["messages"] == [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                                {"role": "user", "content": 'a sign that says "Movie Gen"'}]  # fmt: skip
    for guidance in ("add nothing", "plain", "style of the captions", "exactly as written", "caption only"):
        assert guidance in DEFAULT_SYSTEM_PROMPT
    OpenAIRewriter(server["url"], "tiny-llm").rewrite("a cat")
    assert server["requests"][-1]["auth"] is None


def test_openai_restores_a_dropped_quote(server):
    server["content"] = "A wooden sign on a sunny street."
    out = rewrite_prompt('a sign that says "Movie Gen"', OpenAIRewriter(server["url"], "m"))
    assert out == 'A wooden sign on a sunny street, with the text "Movie Gen".'


@pytest.mark.parametrize(
    "mode, message",
    [("500", "HTTP 500.*model exploded"), ("badjson", "invalid JSON"), ("empty", "no choices")],
)
def test_openai_server_errors(server, mode, message):
    server["mode"] = mode
    with pytest.raises(MovieGenError, match=message) as info:
        OpenAIRewriter(server["url"], "m").rewrite("a cat")
    assert "\n" not in str(info.value)


def test_openai_timeout_and_refused(server):
    server["mode"] = "slow"
    with pytest.raises(MovieGenError, match="cannot reach"):
        OpenAIRewriter(server["url"], "m", timeout=0.2).rewrite("a cat")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MovieGenError, match="cannot reach.*refused"):
        OpenAIRewriter(f"http://127.0.0.1:{port}", "m", timeout=2).rewrite("a cat")


# --- local transformers backend with a tiny random model ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """One tiny random GPT-2 with a word-level tokenizer, saved with and without a chat template."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    import torch

    words = (
        "a red circle moving to the left on dark background . scene is clearly visible with natural lighting"
    )
    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "[EOS]", *dict.fromkeys(words.split())])}
    model = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    model.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=model, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_embd=16, n_layer=1, n_head=2, n_positions=512,
                                     bos_token_id=2, eos_token_id=2, pad_token_id=1)  # fmt: skip
    lm = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():  # tied embeddings: zero logits for [UNK], [PAD], [EOS], so greedy output has words
        lm.transformer.wte.weight[:3] = 0
    root = tmp_path_factory.mktemp("rewriter")
    lm.save_pretrained(root / "plain")
    tokenizer.save_pretrained(root / "plain")
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}caption :{% endif %}"
    )
    lm.save_pretrained(root / "chat")
    tokenizer.save_pretrained(root / "chat")
    return root


@pytest.mark.parametrize("folder", ["plain", "chat"])
def test_transformers_rewriter_mechanics(tiny_lm, folder):
    rewriter = TransformersRewriter(tiny_lm / folder, max_new_tokens=4)
    assert bool(rewriter.tokenizer.chat_template) == (folder == "chat")
    if folder == "chat":
        assert rewriter._input_text("a cat").endswith("user : a cat\ncaption :")
    else:
        assert rewriter._input_text("a cat").endswith("Prompt: a cat\nCaption:")
    reply = rewriter.rewrite("a red ball")
    assert isinstance(reply, str) and len(reply.split()) <= 4  # only new tokens, the prompt is stripped
    assert rewriter.rewrite("a red ball") == reply
    prompt = 'FPS-8. Camera: pan left. a sign that says "Movie Gen"'
    out = rewrite_prompt(prompt, rewriter)
    assert out.startswith("FPS-8. Camera: pan left. ") and quoted_text(out) == "Movie Gen"
    assert rewrite_prompt(prompt, rewriter) == out


def test_transformers_rewriter_bad_folders(tiny_lm, tmp_path):
    with pytest.raises(MovieGenError, match="not found"):
        TransformersRewriter(tmp_path / "missing")
    with pytest.raises(MovieGenError, match="cannot load rewriter model"):
        TransformersRewriter(tmp_path)
    with pytest.raises(MovieGenError, match="max_new_tokens"):
        TransformersRewriter(tiny_lm / "plain", max_new_tokens=0)


# --- the typer command -------------------------------------------------------------------------------------


def test_rewrite_cli(server, tiny_lm):
    app = typer.Typer()
    app.command()(rewrite_cli)
    runner = CliRunner()
    result = runner.invoke(app, ["FPS-8. red ball moving left"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "FPS-8. a red circle moving to the left\n"
    server["content"] = "A short red ball caption."
    result = runner.invoke(app, ["red ball", "--backend", "openai", "--url", server["url"], "--model", "m"])
    assert result.exit_code == 0 and result.stdout == "A short red ball caption.\n"
    result = runner.invoke(
        app, ['a "Hi" sign', "--backend", "transformers", "--path", str(tiny_lm / "plain")]
    )
    assert result.exit_code == 0 and '"Hi"' in result.stdout
    result = runner.invoke(app, ["red ball", "--backend", "openai"])
    assert result.exit_code == 1 and isinstance(result.exception, MovieGenError)
    assert "--url and --model" in str(result.exception)


def test_moviegen_rewrite_and_generate_rewrite_commands(tmp_path, capsys):
    from tests.helpers import run_cli

    code, out, _ = run_cli(capsys, "rewrite", "Camera: pan left. a cat")
    assert code == 0 and out == "Camera: pan left. a cat\n"
    code, out, err = run_cli(
        capsys, "generate", "blue box falling", "--out", tmp_path / "v.mp4", "--steps", "1"
    )
    assert code == 0, err
    assert "rewritten prompt: FPS-16. a blue square moving down" in err  # on by default for the world model
    code, out, err = run_cli(capsys, "generate", "blue box falling", "--out", tmp_path / "u.mp4", "--steps",
                             "1",
                             "--no-rewrite")  # fmt: skip
    assert code == 0 and "rewritten" not in err
    code, out, err = run_cli(capsys, "generate", "blue box falling, the camera pans left", "--out",
                             tmp_path / "t.mp4",
                             "--model", "tiny-random", "--steps", "1", "--rewrite")  # fmt: skip
    assert code == 0 and "rewritten prompt: FPS-16. Camera: pan left. blue box falling" in err
    assert (tmp_path / "v.mp4").stat().st_size > 0
    code, _, err = run_cli(capsys, "generate", "FPS-8. a cat", "--out", tmp_path / "w.mp4", "--fps", "16")
    assert code == 1 and "FPS-8" in err and "16" in err and not (tmp_path / "w.mp4").exists()
    code, out, err = run_cli(capsys, "generate", "FPS-8. Camera: pan left. a cat", "--out",
                             tmp_path / "w.mp4",
                             "--steps", "1")  # fmt: skip
    assert code == 0 and "8 fps" in out, err
