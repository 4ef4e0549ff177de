"""`lorapilot export RUN --for ollama`: a folder `ollama create` builds a model from.

What goes in: the base merged with the adapter in 16-bit (the same merge as `export --merged`) and a Modelfile.
Why merged and not base + ADAPTER: lorapilot's runs are QLoRA runs (a 4-bit base) and Ollama advises against
adapters trained on a quantised base; Ollama converts adapters of Llama, Mistral and Gemma only (Qwen, one of the
supported families, would fail); and an ADAPTER line needs the exact base already in Ollama. The merged folder
needs nothing else.

The Modelfile's TEMPLATE is one of the known-good templates in presets/ollama/, the one that renders, for the
same conversations, exactly the prompt the run trained with: each candidate is rendered here (a Go-template
renderer, engine/export/gotemplate.py) and compared with the trainer's own renderer (engine/data/template.py),
multi-turn and with a system prompt. None matching is an error, never a guess: a wrong template is what makes
exported models "answer nonsense". The earlier answers of a probe reach Ollama as the model writes them (what
training trained it to write at that turn), not as the data wrote them: Qwen3 writes `<think>...</think>` before
every answer, and its template drops that block from earlier answers, so a match needs Ollama to drop it too, which
its server does for the qwen3 architecture only (server/routes.go filterThinkTags); a Go template cannot (no
string functions). DeepSeek-R1's template drops the reasoning from every answer, so its model writes none.
A run whose chat template has no system role (Gemma 2, Mistral v0.2) trained no row with one, and vLLM or llama.cpp,
rendering that template, refuse a request with one: so does its Ollama template (an execution error), where Ollama's
own would fold the system message into the user's turn or drop it. One that writes the system message only into a
user turn that ends the conversation (Mistral v0.3's placement) trained no row with it either; a request's goes where
that template, rendered by vLLM or llama.cpp, puts it (system_asks: a template that drops it does not match). PARAMETER stop lists every end token the run trained and every stop
the playground stops on (engine.data.stops: the EOS, the family's published stops), then the template's turn
markers; SYSTEM carries the system prompt every training row shared, only when training showed it to the model: a
chat template with no system role, or one that leaves the system prompt out of a row ending with an answer
(Mistral-v0.3-style: it goes into the last user turn only), trained without it, and the matched template renders
none; a SYSTEM line would promise what the model never read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.data.stops import split_end, stop_tokens
from engine.errors import DataError, UserError, shell_word
from engine.export.gotemplate import GoTemplateError, ollama_chat_values, render
from engine.settings import PRESETS_DIR

TEMPLATES_DIR = PRESETS_DIR / "ollama"
EOS_MARK = "[[eos_token]]"
# Tried in this order; the first whose renders all match wins (qwen2.5 before chatml: with a system prompt both
# render alike, the probe without one tells them apart; gemma before gemma3: without a system prompt, all a Gemma 2
# run has, both render alike, and gemma3 would put a system prompt given at serving time into the user's turn).
PREFERENCE = ("qwen2.5", "chatml", "llama3.1", "llama3", "mistral", "mistral-last-user", "mistral-v0.3", "mistral-nemo",
              "mistral-small3", "gemma", "gemma3", "phi3.5", "deepseek-r1", "alpaca", "completion")
# Architectures Ollama converts from safetensors itself (ollama convert/convert.go, 2026-08). Others need a GGUF
# from llama.cpp first (see the llama.cpp export).
OLLAMA_CONVERTS = ("LlamaForCausalLM", "MixtralForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM",
                   "Gemma3ForCausalLM", "Phi3ForCausalLM", "Qwen2ForCausalLM", "CohereForCausalLM",
                   "Olmo3ForCausalLM")
# Architectures whose GGUF (llama.cpp's: "qwen3") makes Ollama's server drop the think block of every answer before
# the last question, as Qwen3's template does in training (server/routes.go filterThinkTags, Ollama 0.6.7 on; the
# MoE's "qwen3moe" is not among them).
OLLAMA_DROPS_THINK = ("Qwen3ForCausalLM",)

PROBE = [{"role": "user", "content": "What is the capital of France?"},
         {"role": "assistant", "content": "Paris."},
         {"role": "user", "content": "And the capital of Italy?"},
         {"role": "assistant", "content": "Rome."}]
PROBE_SYSTEM = "You answer in one word."
# The answers with reasoning, as a reasoning model's data writes them (what its template keeps of them is checked)
PROBE_REASONING = [PROBE[0], {"role": "assistant", "content": "<think>\nFrance's capital is Paris.\n</think>\n\nParis."},
                   PROBE[2], {"role": "assistant", "content": "<think>\nItaly's capital is Rome.\n</think>\n\nRome."}]


@dataclass
class OllamaTemplate:
    name: str
    template: str          # Go template; EOS_MARK stands for the tokenizer's EOS
    stops: list[str]
    about: str

    def for_tokenizer(self, eos: str | None) -> str:
        return self.template.replace(EOS_MARK, eos or "")


@dataclass
class TemplateMatch:
    template: OllamaTemplate
    text: str                        # the TEMPLATE, EOS filled in
    stops: list[str]
    trained_ends: list[str]
    bos: str | None                  # the BOS the rows began with (Ollama's tokenizer adds it, not the TEMPLATE)
    system: str | None = None        # the SYSTEM line: the data's system prompt, when training rendered it
    checked: list[str] = field(default_factory=list)   # what was compared, in words
    notes: list[str] = field(default_factory=list)


def load_templates(folder: Path = TEMPLATES_DIR) -> list[OllamaTemplate]:
    out = []
    for name in PREFERENCE:
        params = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        out.append(OllamaTemplate(name, (folder / f"{name}.gotmpl").read_text(encoding="utf-8"),
                                  list(params.get("stop", [])), params.get("about", "")))
    return out


@dataclass
class TrainedPrompt:
    messages: list[dict]     # the conversation, ending with the answer the model was trained to give
    prompt: str              # what the model read before that answer (leading BOS removed)
    end: str                 # the end token trained after the answer
    began_with_bos: bool = False
    system_left_out: bool = False   # the conversation's system message is nowhere in what was trained
    # the conversation before that answer as a server holds it: each earlier answer as the model writes it
    served: list[dict] = field(default_factory=list)


def _last_answer(renderer, messages: list[dict], fmt: str):
    """The render of a conversation ending with an answer, the index of its last trained segment, and that answer
    as the model writes it (the trained text less its end tokens) with those end tokens."""
    if fmt == "completion":
        row = {"prompt": messages[0]["content"], "completion": messages[1]["content"]}
    else:
        row = {"messages": messages}
    rendered = renderer.render(row, "completion" if fmt == "completion" else "chat", "ollama export probe")
    last = max(i for i, (_, is_trained) in enumerate(rendered.segments) if is_trained)
    written = trained = rendered.segments[last][0]
    while token := next((t for t in renderer.end_tokens if written.endswith(t)), None):
        written = written[: -len(token)]
    return rendered, last, written, trained[len(written):]


def trained_prompt(renderer, messages: list[dict], fmt: str, bos: str | None) -> TrainedPrompt:
    """The prompt and end token the trainer's renderer makes of this conversation."""
    rendered, last, _, end = _last_answer(renderer, messages, fmt)
    # Everything the model read before its last answer: the segments' text up to it (the whole row's text is
    # their concatenation), history turns included.
    prompt = "".join(text for text, _ in rendered.segments[:last])
    began_with_bos = bool(bos) and prompt.startswith(str(bos))
    if began_with_bos:
        prompt = prompt[len(str(bos)):]
    served = [{**m, "content": _last_answer(renderer, messages[: i + 1], fmt)[2]} if m["role"] == "assistant" else m
              for i, m in enumerate(messages[:-1])]
    return TrainedPrompt(messages, prompt, end, began_with_bos, rendered.system_left_out, served)


def probes(fmt: str, system: str | None) -> list[list[dict]]:
    if fmt == "completion":
        return [PROBE[:2]]
    return [PROBE, [{"role": "system", "content": system or PROBE_SYSTEM}, *PROBE], PROBE_REASONING]


def _probe_words(messages: list[dict]) -> str:
    return (f"{sum(m['role'] == 'assistant' for m in messages)} answers"
            + (" after a system prompt" if messages[0]["role"] == "system" else "")
            + (" with reasoning (<think>)" if messages is PROBE_REASONING else ""))


def ollama_prompt(template_text: str, messages: list[dict], system: str = "", *, strip_think: bool = False) -> str:
    """What Ollama feeds the model for this conversation (the answer not yet written)."""
    return render(template_text, ollama_chat_values(messages, system, strip_think=strip_think))


@dataclass
class SystemAsk:
    """A conversation asked with a system message that no training row rendered, and what the run's own template
    (as vLLM and llama.cpp render it, with a generation prompt) makes of it: None where it refuses one."""
    messages: list[dict]
    prompt: str | None


def system_asks(tokenizer, fmt: str, cases: list[TrainedPrompt], refused: bool) -> list[SystemAsk]:
    """For a run that never trained with its system message (the template refuses one, or leaves it out of every
    row that ends with an answer), what a request with one must get: the template's refusal, or its placement."""
    from engine.data.template import training_chat_template

    if fmt == "completion" or not (refused or any(c.system_left_out for c in cases)):
        return []
    head = [{"role": "system", "content": PROBE_SYSTEM}]
    asks = []
    for history in (PROBE[:1], PROBE[:3]):
        if refused:
            asks.append(SystemAsk(head + history, None))
            continue
        text = tokenizer.apply_chat_template(head + history, tokenize=False, add_generation_prompt=True,
                                             chat_template=training_chat_template(tokenizer, fmt))
        asks.append(SystemAsk(head + history, text.removeprefix(tokenizer.bos_token or "\0")))
    return asks


def _asks_as_template_does(text: str, ask: SystemAsk) -> bool:
    try:
        return ollama_prompt(text, ask.messages) == ask.prompt
    except GoTemplateError:
        return ask.prompt is None


def _renders_all(text: str, cases: list[TrainedPrompt], strip_think: bool, asks: Sequence[SystemAsk] = ()) -> bool:
    try:
        return (all(ollama_prompt(text, c.served, strip_think=strip_think) == c.prompt for c in cases)
                and all(_asks_as_template_does(text, a) for a in asks))
    except (GoTemplateError, LookupError, TypeError, ValueError):  # a candidate that cannot render: no match
        return False


def match_template(tokenizer, fmt: str, system: str | None = None,
                   templates: list[OllamaTemplate] | None = None, architecture: str | None = None) -> TemplateMatch:
    """The known-good Ollama template that renders what the run trained with; UserError when none does.

    architecture: the merged model's (config.json), which decides whether Ollama drops earlier answers' think
    blocks (OLLAMA_DROPS_THINK); unknown, it is assumed not to."""
    from engine.data.masking import tokenizer_adds_bos
    from engine.data.template import Renderer, is_raw_template, model_chat_template

    renderer = Renderer(tokenizer, "completions")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if fmt == "text":
        raise UserError("the run trained on plain text rows: there is no prompt format to give Ollama",
                        fix="export --merged and use the model for text completion (ollama: TEMPLATE {{ .Prompt }})")
    if fmt == "completion" and has_template and not is_raw_template(model_chat_template(tokenizer)):
        fmt = "chat"  # completion rows went through the model's chat template as one user turn and one answer
    bos = tokenizer.bos_token
    strip_think = architecture in OLLAMA_DROPS_THINK
    cases, notes, refuses_system = [], [], False
    for messages in probes(fmt, system):
        try:
            cases.append(trained_prompt(renderer, messages, fmt, bos))
        except DataError:
            if messages[0]["role"] != "system":
                raise
            refuses_system = True
            notes.append("the chat template has no system role (it refuses one): no SYSTEM line")
    if system and any(c.system_left_out for c in cases):
        notes.append("the chat template leaves the system prompt out of conversations that end with an answer, "
                     "so the model trained without it: no SYSTEM line")
    shown = system if any(c.messages[0]["role"] == "system" and not c.system_left_out for c in cases) else None
    asks = system_asks(tokenizer, fmt, cases, refuses_system)
    # A row trained without its system message: its prompt is compared without one; a request's is the asks'
    cases = [dataclasses.replace(c, served=c.served[1:]) if c.system_left_out else c for c in cases]
    candidates = templates if templates is not None else load_templates()
    for candidate in candidates:
        text = candidate.for_tokenizer(tokenizer.eos_token)
        if _renders_all(text, cases, strip_think, asks):
            ends = list(dict.fromkeys(t for c in cases for t in split_end(c.end, renderer.end_tokens)))
            # and every stop the playground and chat stop on (the EOS, the family's published stops): one rule
            stops = list(dict.fromkeys([*ends, *stop_tokens(tokenizer), *candidate.stops]))
            starts_with_bos = bool(bos) and (tokenizer_adds_bos(tokenizer) or any(c.began_with_bos for c in cases))
            checked = [_probe_words(c.messages) for c in cases]
            if refuses_system:
                notes.append("a request with a system message fails (a template error at `no system`), as training "
                             "refused rows with one: put such instructions into the user's message")
            elif asks:
                notes.append("a request's system message goes into its last user turn, where the run's chat template "
                             "puts it (as vLLM and llama.cpp do); no training row had it there")
            if strip_think and any(c.served != c.messages[:-1] for c in cases):
                notes.append("the model writes a think block (<think>...</think>) before its answers, and its chat "
                             "template leaves it out of earlier answers; Ollama does the same for this architecture "
                             f"({architecture}), so a multi-turn chat shows the history as training did")
            return TemplateMatch(candidate, text, stops, ends, bos if starts_with_bos else None, shown, checked,
                                 notes)
    if not strip_think and any(_renders_all(c.for_tokenizer(tokenizer.eos_token), cases, True, asks) for c in candidates):
        raise UserError(
            "Ollama would show this model its earlier answers with their think blocks (<think>...</think>), which "
            "the run's chat template left out of every earlier answer in training: from the second question on, "
            "the model would read a history unlike any it trained on",
            problems=[f"Ollama drops them itself only for the architectures {', '.join(OLLAMA_DROPS_THINK)}; this "
                      f"model is {architecture or 'of an unknown architecture'}"],
            fix="use `--for vllm` or `--for llama.cpp` (both render the run's own chat template, which drops them)")
    raise UserError("no known Ollama template renders the prompt format this run trained with",
                    problems=[f"the run's template renders: {cases[0].prompt!r}"],
                    fix="use `--for vllm` or `--for llama.cpp` (both read the run's own chat template), "
                        "or add a template for this family to presets/ollama/")


def _quoted(text: str, what: str) -> str:
    if '"""' in text:
        raise UserError(f"the {what} contains three double quotes in a row, which a Modelfile cannot hold")
    return f'"""{text}"""'


def modelfile(match: TemplateMatch, *, source: str, system: str | None, from_: str = ".") -> str:
    lines = [f"# Written by lorapilot from {source}.",
             (f"# TEMPLATE: the {match.template.name} prompt format, checked against the run's own template "
              f"({'; '.join(match.checked)})."),
             f"# {match.template.about}"]
    if match.bos:
        lines.append(f"# Every training row began with {match.bos}: Ollama's tokenizer adds it (not the TEMPLATE).")
    lines += [f"FROM {from_}", f"TEMPLATE {_quoted(match.text, 'template')}"]
    if system:
        lines.append(f"SYSTEM {_quoted(system, 'system prompt')}")
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in match.stops]
    return "\n".join(lines) + "\n"


def base_architecture(base: str) -> str | None:
    """The base model's architecture (config.json's first), which the merge keeps; None where it cannot be read."""
    from engine.export.served_names import base_config

    names = (base_config(base) or {}).get("architectures")
    return names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None


def export_ollama(run_dir: str | Path, out: str | Path, *, trust_remote_code: bool = False, log=print) -> Path:
    from engine.export.card import write_card
    from engine.export.facts import run_facts, run_tokenizer
    from engine.export.merge import check_empty_out, merge_source, merged_onto, merging_line, write_merged, writing

    dst = check_empty_out(out)
    source = merge_source(run_dir, f"export {shell_word(Path(run_dir))} --for ollama --out {shell_word(dst)}",
                          trust_remote_code=trust_remote_code)
    facts = run_facts(run_dir)
    system = facts.data.system_prompt
    tokenizer = run_tokenizer(facts.adapter)
    fmt = facts.data.format
    if fmt == "unknown":  # the dataset is not readable here: its format decides only without a chat template
        fmt = facts.cfg.dataset.format if facts.cfg.dataset.format != "auto" else "chat"
        if not getattr(tokenizer, "chat_template", None) and facts.cfg.dataset.format == "auto":
            raise UserError(f"{facts.data.path}: cannot be read here, and without a chat template the prompt format "
                            "depends on the data's format", fix="export where the dataset is, or set dataset.format "
                            f"in {facts.run_dir / 'config.yaml'}")
    # before the (slow) merge: a mismatch costs nothing
    match = match_template(tokenizer, fmt, system, architecture=base_architecture(facts.base_path))
    system = match.system
    log(f"template: {match.template.name} (matches the run's: {'; '.join(match.checked)})")
    log(merging_line(facts.cfg.quantization))
    with writing(dst) as tmp:
        write_merged(source, tmp, card=False)
        (tmp / "Modelfile").write_text(modelfile(match, source=str(Path(run_dir).resolve()), system=system),
                                       encoding="utf-8")
        arch = (json.loads((tmp / "config.json").read_text()).get("architectures") or ["?"])[0]
        notes = list(match.notes) + facts.data.notes
        if arch not in OLLAMA_CONVERTS:
            notes.append(f"Ollama does not convert {arch} from safetensors itself: make a GGUF with "
                         f"`lorapilot export {shell_word(run_dir)} --for llama.cpp` and set FROM to the .gguf file")
        name = facts.name
        usage = (f"In this folder:\n\n```sh\nollama create {name} -f Modelfile\nollama run {name}\n```\n\n"
                 f"The model is the adapter merged into {merged_onto(facts.cfg.quantization)}. "
                 f"The Modelfile's TEMPLATE renders the **{match.template.name}** prompt format the run trained with "
                 f"(compared with the training renderer on: {'; '.join(match.checked)}); generation stops at "
                 + ", ".join(f"`{s}`" for s in match.stops) + "."
                 + (f" SYSTEM is the system prompt every training row had: {system!r}." if system else "")
                 + "".join(f"\n\n- {n}" for n in notes))
        write_card(facts, tmp, serve_title="Ollama", serve_text=usage)
    for n in notes:
        log(f"note: {n}")
    return dst
