"""The offline rewriter: reads what a prompt asks for and writes it in the model's caption style (paper §3.6).

The paper's rewriter is an LLM that brings user prompts into the style of the training captions. For a
model whose captions follow a known :class:`~moviegen.rewrite.style.CaptionStyle` (the built-in world),
the same job is done here by rules and an English lexicon, deterministically and offline:

1. **camera motion** said in words anywhere ("the camera pans left across", "zooming in on", "a
   locked-off shot of", "on a tripod") becomes the ``Camera: <label>.`` prefix, taken out of the text.
   Labels the style lacks map to the nearest it has (a dolly-in is a zoom in, a truck a pan);
2. **an object** (one shape noun, e.g. sphere/orb/cube/tile/pyramid, at most one colour, e.g.
   crimson/turquoise/hot pink, and at most one direction, e.g. "drifting leftward", "from right to
   left", "ascends", "sits motionless") is written as the style's own object caption;
3. **a subject** of the style (a kitten, an espresso cup, a spacecraft) is written with the style's
   phrase for it (the user's own phrase when it is one of the style's);
4. anything else is kept exactly as typed, apart from the camera phrase.

The rewriter never adds content: no background, no lighting, no motion the prompt did not ask for, no
``Camera: static.`` for a prompt that names no camera. What it drops (words the style has no caption for:
"glowing", "trampoline") is reported by :meth:`TemplateRewriter.read` so the caller can say so. Without a
style only step 1 runs. Rewriting a rewrite returns it unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from moviegen.models.text import CAMERA_MOTIONS, compose_prompt
from moviegen.rewrite.style import CaptionStyle

# --- camera motion ----------------------------------------------------------------------------------------

_CAM = r"(?:camera|cam|view|shot|lens|footage|frame|filming)"
_GAP = (
    r"(?:\s+(?:to|toward|towards|the|its|slowly|gently|steadily|smoothly|quickly|gradually|across|over|off|a|"
    r"bit|little|camera|view|lens|shot)){0,3}"
)
_DIR = (r"(left(?:wards?)?|right(?:wards?)?|up(?:wards?)?|down(?:wards?)?|skywards?|"
        r"to\s+the\s+(?:left|right)|toward(?:s)?\s+the\s+(?:left|right))")  # fmt: skip
_CAMERA_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"\bzoom(?:s|ed|ing)?\b(?:\s+\w+)?\s+(in|into|on|onto|closer|toward|towards)\b", "zoom in"),
    (r"\bzoom(?:s|ed|ing)?\b(?:\s+\w+)?\s+(out|away|back)\b", "zoom out"),
    (r"\bzoom[- ](in|out)\b", "zoom {}"),
    (r"\b(?:push(?:es|ed|ing)?|doll(?:y|ies|ying|ied)|creep(?:s|ing)?)\s+(?:in\b|closer|forward|into)",
     "dolly in"),
    (rf"\b{_CAM}\s+(?:\w+\s+)?(?:mov(?:e|es|ed|ing)|glid(?:e|es|ing)|push(?:es|ing)?|draw(?:s|ing)?)\s+"
     r"(?:in\b|closer|forward|toward|towards)", "dolly in"),
    (r"\b(?:pull(?:s|ed|ing)?|doll(?:y|ies|ying|ied)|draw(?:s|ing)?)\s+(?:back|out|away)\b", "dolly out"),
    (rf"\b{_CAM}\s+(?:\w+\s+)?(?:mov(?:e|es|ed|ing)|back(?:s|ing)?)\s+(?:back|away|out)\b", "dolly out"),
    (rf"\b{_CAM}\s+(?:\w+\s+)?widen(?:s|ing)?\b", "zoom out"),
    (r"\b(left|right|up|down)(?:wards?)?\s+(?:camera\s+)?(?:pan|sweep)(?:s|ning)?\b", "pan {}"),
    (r"\b(left|right|up|down)(?:wards?)?\s+(?:camera\s+)?tilt(?:s|ing)?\b", "tilt {}"),
    (rf"\bpan(?:s|ned|ning)?\b{_GAP}\s+{_DIR}", "pan {}"),
    (rf"\btilt(?:s|ed|ing)?\b{_GAP}\s+{_DIR}", "tilt {}"),
    (rf"\b{_CAM}\s+(?:\w+\s+)?(?:mov|slid|sweep|swing|swung|glid|drift|track|truck|travel|turn|swivel|rotat|"
     rf"sway|crawl|look|point|tip|rais|rise|rising|lower|drop|sink)\w*{_GAP}\s+{_DIR}", "pan {}"),
    (r"\b(?:static|still|fixed|steady|stationary|locked(?:[- ]off)?|unmoving|motionless|stable|immobile|"
     rf"tripod)\s+{_CAM}", "static"),
    (rf"\b{_CAM}\s+(?:is\s+|stays\s+|remains\s+|holds\s+|keeps\s+|held\s+|kept\s+)?(?:perfectly\s+|completely\s+)?"
     r"(?:still|static|steady|fixed|stationary|motionless|locked|unmoving)", "static"),
    (rf"\b{_CAM}\s+(?:does\s+not|doesn't|never|won't)\s+move", "static"),
    (r"\b(?:no|without(?:\s+any)?)\s+camera\s+(?:movement|motion|moves)", "static"),
    (r"\b(?:on|from|using|with)\s+a\s+tripod\b|\blocked[- ]off\b|\btripod\b", "static"),
    (rf"\b(?:shaky|handheld|hand-held|shaking|wobbly|jittery)\s+{_CAM}|\b{_CAM}\s+(?:shakes|shaking|wobbles)",
     "shaky"),
    (r"\b(?:roll|rotat)\w*\s+(clockwise|counterclockwise|counter-clockwise|anticlockwise|anti-clockwise)",
     "roll {}"),
)  # fmt: skip
_CAMERA_RE = [(re.compile(p, re.I), label) for p, label in _CAMERA_PATTERNS]
_CAMERA_SYNONYMS = {"dolly in": "zoom in", "dolly out": "zoom out", "truck left": "pan left",
                    "truck right": "pan right", "pedestal up": "tilt up",
                    "pedestal down": "tilt down"}  # fmt: skip
_LEAD = re.compile(
    r"(?:\s*,\s*|\s+|^)(?:(?:with|while|as|and|then)\s+)?(?:(?:the|a|an)\s+)?(?:slow\s+|smooth\s+|gentle\s+)?"
    r"(?:(?:camera|view|shot|lens)\s+)?(?:is\s+|slowly\s+|gently\s+)?$",
    re.I,
)
_TRAIL = re.compile(
    r"^\s*(?:closer\s+(?:to|in\s+on)|closer|in\s+on|to\s+reveal|to\s+show|away\s+from|back\s+from|out\s+from|"
    r"on|onto|over|across|to|toward|towards|into|at|from|around|upon|of)\b",
    re.I,
)  # fmt: skip


def _direction(word: str) -> str:
    word = word.lower()
    for d in ("left", "right", "up", "down"):
        if d in word:
            return d
    return "up" if word.startswith("sky") else word


def _camera_label(label: str, match: re.Match, allowed: tuple[str, ...]) -> str | None:
    if "{}" in label:
        arg = match.group(1).lower().replace("-", "").replace("anticlockwise", "counterclockwise")
        value = _direction(arg) if label.startswith(("pan", "tilt")) else arg
        if label.startswith("pan") and value in ("up", "down"):
            label = "tilt {}"  # "the camera pans up" is a tilt
        elif label.startswith("tilt") and value in ("left", "right"):
            label = "pan {}"
        label = label.format(value)
    if label not in allowed:
        label = _CAMERA_SYNONYMS.get(label, label)
    return label if label in allowed else None


def take_camera(text: str, allowed: tuple[str, ...] = CAMERA_MOTIONS) -> tuple[str | None, str]:
    """The first camera-motion phrase of ``text`` as a label in ``allowed``, and the text without it."""
    for pattern, label in _CAMERA_RE:
        match = pattern.search(text)
        if match is None:
            continue
        name = _camera_label(label, match, allowed)
        start, end = match.span()
        lead = _LEAD.search(text[:start])
        start = lead.start() if lead else start
        trail = _TRAIL.match(text[end:])
        end += trail.end() if trail else 0
        rest = _tidy(text[:start] + (", " if start and end < len(text) else " ") + text[end:])
        if name is not None and re.search(r"\w", rest):
            return name, rest
    return None, text


def _tidy(text: str) -> str:
    text = re.sub(r"\s+([,.;])", r"\1", re.sub(r"\s+", " ", text))
    text = re.sub(r"(?:,\s*){2,}", ", ", text)
    return text.strip(" ,;.")


# --- objects ----------------------------------------------------------------------------------------------

COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet", "ruby", "cherry", "vermilion", "vermillion", "carmine", "cardinal",
            "maroon", "burgundy", "garnet", "blood-red", "blood red", "fire-engine red", "tomato", "reddish"),
    "green": ("green", "emerald", "lime", "jade", "olive", "mint", "chartreuse", "sage", "kelly green",
              "forest green", "grass-green", "grass green", "greenish", "verdant"),
    "blue": ("blue", "navy", "azure", "cobalt", "sapphire", "indigo", "cerulean", "ultramarine", "royal blue",
             "navy blue", "denim", "bluish", "blueish"),
    "yellow": ("yellow", "gold", "golden", "lemon", "canary", "mustard", "butter", "banana", "sunflower",
               "yellowish", "saffron", "lemon-yellow"),
    "white": ("white", "ivory", "snow", "snowy", "snow-white", "pearl", "pearly", "cream", "milky",
              "alabaster", "chalk", "chalky", "whitish", "silver", "silvery", "off-white"),
    "magenta": ("magenta", "pink", "fuchsia", "fuschia", "purple", "violet", "lilac", "lavender", "mauve",
                "plum", "orchid", "hot pink", "hot-pink", "raspberry", "pinkish", "purplish", "amethyst"),
    "orange": ("orange", "tangerine", "amber", "apricot", "peach", "pumpkin", "rust", "copper", "carrot",
               "ginger", "orangey", "orangish", "burnt orange", "marigold"),
    "cyan": ("cyan", "turquoise", "teal", "aqua", "aquamarine", "sky blue", "sky-blue", "light blue",
             "light-blue", "baby blue", "baby-blue", "sea green", "seafoam", "cyan-blue", "electric blue"),
}  # fmt: skip
SHAPE_NOUNS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "circular", "ball", "disc", "disk", "dot", "sphere", "spherical", "orb", "globe",
               "bubble", "marble", "coin", "round", "oval", "ellipse", "spot", "bead", "blob", "ring", "puck",
               "pellet", "roundel", "o-shape"),
    "square": ("square", "squarish", "box", "block", "cube", "cubic", "tile", "rectangle", "rectangular",
               "quadrilateral", "brick", "crate", "panel", "four-sided", "four sided", "slab", "checker",
               "quad", "boxy", "chip", "four-cornered", "four cornered", "four sides", "four equal sides",
               "four corners", "four right angles", "four-edged"),
    "triangle": ("triangle", "triangular", "wedge", "pyramid", "pyramidal", "three-sided", "three sided",
                 "arrowhead", "delta", "cone", "trigon", "tri-angle", "spike", "three-cornered",
                 "three cornered", "three sides", "three equal sides", "three corners", "three angles",
                 "three points", "three-pointed", "tri shape", "tri-shape", "tri", "triangle-shaped"),
}  # fmt: skip
OTHER_COLORS = frozenset(
    ("black", "grey", "gray", "brown", "beige", "tan", "khaki", "charcoal", "ebony", "sepia", "taupe")
)
"""Colour words no world caption has: an object in one of them is not something the style can describe."""
_PLURALS = {"circles", "balls", "discs", "disks", "dots", "spheres", "orbs", "globes", "bubbles", "marbles",
            "squares", "boxes", "blocks", "cubes", "tiles", "rectangles", "bricks", "triangles", "wedges",
            "pyramids", "shapes", "objects", "things"}  # fmt: skip
_COUNTS = re.compile(
    r"\b(?:two|three|four|five|six|several|many|multiple|some|few|pair|couple|dozens?|both)\b"
)

_FROM_TO = re.compile(
    r"\bfrom\s+(?:the\s+)?(?:left|right|top|bottom|upper|lower)(?:\s+(?:side|edge|corner|part))?"
    r"(?:\s+of\s+the\s+(?:frame|screen|picture|image))?\s+(?:to|towards?|toward)\s+(?:the\s+)?"
    r"(left|right|top|bottom|upper|lower)\b|\b(?:left|right|top|bottom)[- ]to[- ](left|right|top|bottom)\b"
)
_POSITION = re.compile(
    r"\b(?:on|in|at|near)\s+(?:the\s+)?(?:far\s+|upper\s+|lower\s+)?(?:left|right|top|bottom|middle|centre|center)"
    r"(?:\s+(?:side|edge|corner|half|part|hand\s+side))?(?:\s+of\s+the\s+(?:frame|screen|picture|image))?"
    r"(?!\s*(?:to|towards?))"
)  # fmt: skip
MOTION_WORDS: dict[str, tuple[str, ...]] = {
    "still": (r"not\s+moving", r"(?:does\s+not|doesn't|does\s+n't|isn't|is\s+not|never)\s+mov\w*",
              r"without\s+(?:any\s+)?mov\w*", r"no\s+(?:motion|movement)", r"stays?\s+put", r"staying\s+put",
              r"in\s+place", r"at\s+rest",
              r"(?:holds?|holding|keeps?|keeping)\s+(?:its\s+|still|steady|position)\w*",
              r"stand(?:s|ing)?\s+still", r"still", r"stationary", r"motionless", r"immobile", r"unmoving",
              r"static", r"frozen", r"hover\w*", r"parked", r"idle", r"fixed", r"rest(?:s|ing)?", r"sits?",
              r"sitting", r"stays?", r"staying", r"remains?", r"remaining", r"steady", r"stuck", r"resting"),
    "left": (r"left(?:wards?)?", r"westwards?", r"west"),
    "right": (r"right(?:wards?)?", r"eastwards?", r"east"),
    "up": (r"up(?:wards?)?", r"skywards?", r"(?:the\s+)?top", r"ris(?:e|es|ing)", r"rose", r"ascend\w*",
           r"climb\w*", r"lift\w*", r"soar\w*", r"north(?:wards?)?", r"uphill", r"higher"),
    "down": (r"down(?:wards?)?", r"(?:the\s+)?bottom", r"fall(?:s|ing)?", r"fell", r"drop\w*", r"sink\w*",
             r"sank", r"sunk", r"descend\w*", r"plummet\w*", r"plung\w*", r"div(?:e|es|ing)",
             r"south(?:wards?)?",
             r"downhill", r"lower(?:s|ing)?", r"tumbl\w*"),
}  # fmt: skip
_MOTION_RE = {m: re.compile(r"\b(?:" + "|".join(ws) + r")\b") for m, ws in MOTION_WORDS.items()}
_BACKDROP = re.compile(
    r",?\s*\b(?:(?:on|against|over|in\s+front\s+of)\s+(?:a\s+|an\s+|the\s+)?(?:plain\s+|solid\s+|pitch\s+)?"
    r"(?:dark|black)(?:\s+(?:background|backdrop|screen|void))?|(?:a\s+|the\s+)?(?:plain\s+)?(?:dark|black)\s+"
    r"(?:background|backdrop|screen|void))\b"
)  # fmt: skip
_FILLER_TEXT = """
a an the one single lone solitary small little tiny big large huge bright vivid deep pure light dark
pale neon glowing brilliant rich vibrant solid shiny simple plain flat colored coloured is it its
that which who there here this of to toward towards across through along over into onto from in on
at by with and as while then slowly steadily smoothly gently quickly fast rapidly gradually
constantly moving moves move travels travelling traveling travel sliding slides slide going goes go
drifting drifts drift gliding glides glide heading heads head rolling rolls roll floating floats
float zipping zips zip scooting scoots shooting shoots cruising cruises creeping creeps crawling
crawls edging edges inching inches making its way way shape object thing figure form item piece
video clip footage scene animation shot image picture frame screen canvas watch see showing shows
shown depicting we you can edge side corner part half of off out all entire whole around about just
only itself sits staying remaining remains stays position place rest bit very really super kind sort
coloured-in middle center centre view seen filmed captured recorded equal equally sided shaped
"""
FILLERS = frozenset(_FILLER_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def _phrase_re(phrases) -> re.Pattern:
    """One pattern for every phrase, longest first, so "sky blue" is read before "blue"."""
    ordered = sorted(phrases, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(re.escape(p).replace(r"\ ", r"[\s-]+") for p in ordered) + r")\b")


def _lexicon(words: dict[str, tuple[str, ...]]) -> tuple[re.Pattern, dict[str, str]]:
    index = {re.sub(r"[\s-]+", " ", w): key for key, ws in words.items() for w in ws}
    return _phrase_re(index), index


def _find(lexicon: tuple[re.Pattern, dict[str, str]], text: str) -> tuple[set[str], str]:
    """The concepts named in ``text`` and the text with their words taken out."""
    pattern, index = lexicon
    found = {index[re.sub(r"[\s-]+", " ", m)] for m in pattern.findall(text)}
    return found, pattern.sub(" ", text)


_COLORS = _lexicon(COLOR_WORDS)
_SHAPES = _lexicon(SHAPE_NOUNS)

SUBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "astronaut": ("astronaut", "spacewoman", "spaceman", "cosmonaut", "space suit", "spacesuit", "nasa",
                  "space explorer", "eileen collins"),
    "coffee": ("coffee", "espresso", "latte", "cappuccino", "mug", "cup", "saucer", "americano", "mocha"),
    "chelsea": ("cat", "kitten", "kitty", "tabby", "feline", "moggy", "pussycat", "puss"),
    "rocket": ("rocket", "spacecraft", "spaceship", "launch vehicle", "launch pad", "launchpad", "shuttle",
               "booster", "missile", "space launch"),
    "immunohistochemistry": ("cell", "cells", "microscope", "microscopic", "microscopy", "tissue",
                             "histology",
                             "histological", "stained", "specimen", "biopsy", "cellular", "micrograph",
                             "immunohistochemistry", "slide"),
}  # fmt: skip
_SUBJECT_RE = {k: _phrase_re(ws) for k, ws in SUBJECT_WORDS.items()}


@dataclass
class Reading:
    """What :meth:`TemplateRewriter.read` understood of a prompt (the description, without prefixes)."""

    camera: str | None = None
    color: str | None = None
    shape: str | None = None
    motion: str | None = None
    subject: str | None = None
    text: str = ""  # the description without the camera phrase
    dropped: list[str] = field(default_factory=list)  # content words the style has no caption for
    in_style: bool = False  # the prompt asks for something the style's captions describe


def _consume(pattern: re.Pattern, text: str) -> tuple[list[str], str]:
    found = pattern.findall(text)
    return found, pattern.sub(" ", text)


def _read_motion(text: str) -> tuple[str | None, str, bool]:
    """The motion a prompt asks for, the text without motion words, and whether two motions conflict."""
    text = _POSITION.sub(" ", text)
    found: set[str] = set()
    if match := _FROM_TO.search(text):
        word = match.group(1) or match.group(2)
        found.add({"top": "up", "upper": "up", "bottom": "down", "lower": "down"}.get(word, word))
        text = _FROM_TO.sub(" ", text)
    else:
        for motion, pattern in _MOTION_RE.items():
            hits, text = _consume(pattern, text)
            if hits:
                found.add(motion)
        if (
            len(found) > 1 and "still" in found
        ):  # "rests, then rises" / "stays on the left": the direction wins
            found.discard("still")
    if len(found) == 1:
        return found.pop(), text, False
    return None, text, len(found) > 1


class TemplateRewriter:
    """Rule-based, offline rewriter into a :class:`CaptionStyle` (see the module docstring)."""

    def __init__(self, style: CaptionStyle | None = None):
        self.style = style

    def rewrite(self, prompt: str) -> str:
        r = self.read(prompt)
        return compose_prompt(self._body(r), camera_motion=r.camera)

    def read(self, prompt: str) -> Reading:
        """Parse a description (no prefixes) into the style's attributes."""
        text = " ".join(prompt.split())
        allowed = self.style.camera_motions if self.style else CAMERA_MOTIONS
        camera, text = take_camera(text, allowed)
        reading = Reading(camera=camera, text=text or prompt.strip())
        if self.style is None or re.search('["“”]', text):
            reading.in_style = camera is not None
            return reading
        low = _BACKDROP.sub(" ", text.lower())
        low = re.sub(
            r"^(?:a\s+|an\s+)?(?:video|clip|footage|animation|shot|scene|film)\s+(?:of|showing)\s+", "", low
        )
        subject = self._subject(low)
        colors, low = _find(_COLORS, low)
        shapes, low = _find(_SHAPES, low)
        plural = bool(_COUNTS.search(low)) or any(w in _PLURALS for w in _WORD.findall(low))
        if subject is not None and not shapes:
            reading.subject, reading.in_style = subject, True
            return reading
        motion, low, conflict = _read_motion(low)
        reading.dropped = [w for w in _WORD.findall(low) if w not in FILLERS and not w.isdigit()]
        other_color = any(w in OTHER_COLORS for w in _WORD.findall(low)) and not colors
        if (
            len(shapes) == 1
            and len(colors) <= 1
            and not (plural or conflict or other_color)
            and subject is None
        ):
            reading.shape, reading.color, reading.motion = shapes.pop(), next(iter(colors), None), motion
            reading.in_style = reading.color is None or reading.color in self.style.colors
        return reading

    def _subject(self, low: str) -> str | None:
        key = re.sub(r"^(?:an?|the)\s+", "", low.strip(" .,;!"))
        for name, phrases in self.style.subjects.items():
            if any(key == re.sub(r"^(?:an?|the)\s+", "", p) for p in phrases):
                return name
        hits = {
            name
            for name, pattern in _SUBJECT_RE.items()
            if name in self.style.subjects and pattern.search(low)
        }
        return hits.pop() if len(hits) == 1 else None

    def _body(self, r: Reading) -> str:
        if r.shape is not None and r.in_style:
            return self.style.object_caption(r.color, r.shape, r.motion)
        if r.subject is not None:
            phrases = self.style.subjects[r.subject]
            own = r.text.strip(" .,;!")
            same = next((p for p in phrases if own.lower() in (p, re.sub(r"^(?:an?|the)\s+", "", p))), None)
            return same or phrases[0]
        return r.text
