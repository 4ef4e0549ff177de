"""What the data a run (or a sweep's trials) trains on is, to tell later whether it changed.

A sweep compares trials that trained on the data as it was when the sweep started: resumed after the JSONL was
edited, its finished trials (the old data) and its new ones (the new data) would be ranked against each other, and
the winner would be wrong without a word. The sweep records each file the trainer reads (engine.data.formats'
source_files: a folder's data files, not the run folders beside them) with its size, modification time and sha256;
a resume looks at size and time first and hashes only a file whose time moved (touched, copied back, or edited).
A hub dataset is recorded by its id and its revision: the one a load reads (engine.hub.read_from: the folder
datasets read its Arrow files from, named by the hub commit it downloaded, or out of reach the cached copy datasets
picks). Its rows are the hub's to change: recorded by id alone, a resume after a new commit trained on other rows
without a word. huggingface_hub's refs/main is not that answer: `hf download` moves it without datasets reading the
new commit, and offline datasets reads its own newest copy, which may be older than the hub cache's.

A run's checkpoints record more: the tokens the trainer made of the data (tokens_record), since the same files make
other tokens under another tokenizer, chat template or lorapilot.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def data_sources(dataset) -> list[tuple[str, list[Path]]]:
    """[(source, its local files)] for dataset.path and dataset.validation_path (those set), in that order; a hub
    id has no local files. `dataset`: a config's DatasetConfig."""
    from engine.data.formats import source_files

    return [(source, source_files(source)) for source in (dataset.path, dataset.validation_path) if source]


def hash_file(path: Path, h=None):
    """sha256 over the file's bytes, read in blocks (`h`: a hash to go on with); the hash object."""
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h


def hub_revisions(dataset) -> dict[str, str]:
    """{hub id: the revision a load of it reads now} for the hub datasets a config reads: each loaded as the trainer
    loads it (engine.data.formats.load_hub_dataset: from the hub, or out of reach its cached copy), the revision
    taken from what was read (engine.hub.read_from). One that cannot be loaded (out of reach and not cached) is left
    out: the trainer's load refuses it, saying why."""
    from engine.data.formats import check_found, load_hub_dataset
    from engine.errors import DataError
    from engine.hub import read_from

    revisions = {}
    for source, paths in data_sources(dataset):
        if paths:
            continue
        try:
            check_found(source)   # a local path gone: no hub id
            copy = read_from(load_hub_dataset(source, []))
        except DataError:
            continue
        if copy is not None:
            revisions[source] = copy.revision
    return revisions


def revision_changes(recorded: dict, dataset, since: str, now: dict[str, str] | None = None) -> list[str]:
    """One line per hub dataset whose revision read `now` (the caller's load's, e.g. the trainer's report; None:
    hub_revisions, a load now) is not the `recorded` one `since` then ("since the sweep started"). One that cannot
    be loaded says nothing here: the load refuses it, saying why."""
    if not recorded:
        return []
    now = hub_revisions(dataset) if now is None else now
    return [f"{repo}: the hub dataset is at revision {now[repo]} now, not {was} as {since}"
            for repo, was in recorded.items() if repo in now and now[repo] != was]


def data_record(dataset, revisions: dict[str, str] | None = None) -> dict:
    """{"files": [{"path", "bytes", "mtime_ns", "sha256"}], "hub": [ids], "hub_revisions": {id: revision read}}:
    what a sweep keeps in sweep.json. `revisions`: those the caller's own read of the data read (check_data's);
    None: hub_revisions, a load now."""
    files, hub = [], []
    for source, paths in data_sources(dataset):
        if not paths:
            hub.append(source)
        for p in paths:
            st = p.stat()
            files.append({"path": str(p.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                          "sha256": hash_file(p).hexdigest()})
    return {"files": files, "hub": hub, "hub_revisions": hub_revisions(dataset) if revisions is None else revisions}


def data_changes(recorded: dict, dataset) -> list[str]:
    """One line per file that is not as `recorded` (data_record) says: changed, gone, or new in a data folder.
    [] when the data is the same. A file whose size and modification time are as recorded is taken as unchanged
    without reading it; one whose time moved but whose bytes are the same gets its new time in `recorded` (the
    caller keeps it), so that a large file touched once is not read again before every trial."""
    was = {f["path"]: f for f in recorded.get("files") or []}
    now = {str(p.resolve()): p for _, paths in data_sources(dataset) for p in paths}
    lines = [f"{path}: gone since the sweep started" for path in was if path not in now]
    lines += [f"{path}: new since the sweep started" for path in now if path not in was]
    for path, p in now.items():
        f = was.get(path)
        if f is None:
            continue
        st = p.stat()
        if st.st_size != f["bytes"]:
            lines.append(f"{path}: changed since the sweep started ({st.st_size:,} bytes, were {f['bytes']:,})")
        elif st.st_mtime_ns != f["mtime_ns"]:
            if hash_file(p).hexdigest() != f["sha256"]:
                lines.append(f"{path}: changed since the sweep started (its contents differ)")
            else:
                f["mtime_ns"] = st.st_mtime_ns
    return lines + revision_changes(recorded.get("hub_revisions") or {}, dataset, "when the sweep started")


# ---------------------------------------------------------------- the tokens a run trains on

# What made the tokens, recorded beside them to say which changed when the tokens differ (engine.train.resume_check).
TOKEN_SOURCES = ("tokenizer", "chat_template", "data_rules", "libraries")


def tokens_record(data, tokenizer) -> dict:
    """What the trainer trains on, as tokens: {"train": examples_digest, "validation": examples_digest, and what made
    them}. `data`: the trainer's PreparedData, the examples in the order it reads them. The files' fingerprint above
    does not see the rest of what turns rows into tokens: the tokenizer and chat template at the model's path, and
    lorapilot's own rules (rendering, masking, which rows are kept); changed under a run, its resume trained on other
    tokens without a word. The makers (TOKEN_SOURCES) are recorded only to say which changed: the tokens decide."""
    return {"train": examples_digest(data.train), "validation": examples_digest(data.validation),
            **token_makers(tokenizer)}


def token_makers(tokenizer) -> dict:
    """What makes the tokens of a tokens_record, beside the data (TOKEN_SOURCES): the tokenizer, its chat template,
    lorapilot's data rules, the libraries. Made without tokenizing a row: a running sweep's driver compares them
    before each trial (the tokens themselves are compared on a resume)."""
    from engine.data.template import model_chat_template

    return {"tokenizer": tokenizer_digest(tokenizer),
            "chat_template": _sha256_text(model_chat_template(tokenizer) or ""),
            "data_rules": data_rules_digest(), "libraries": _library_versions()}


def examples_digest(examples) -> dict:
    """{"count", "sha256"}: the examples' input_ids and labels, in order, each example's lengths before its tokens.
    Hashed as 64-bit integers from arrays: a few seconds for tens of millions of tokens."""
    from array import array

    h = hashlib.sha256()
    for e in examples:
        ids, labels = array("q", e.input_ids), array("q", e.labels)
        h.update(len(ids).to_bytes(8, "little") + len(labels).to_bytes(8, "little"))
        h.update(ids.tobytes())
        h.update(labels.tobytes())
    return {"count": len(examples), "sha256": h.hexdigest()}


def tokenizer_digest(tokenizer) -> str:
    """sha256 over the tokenizer as it tokenizes: its vocabulary, merges and added tokens (the fast tokenizer's own
    serialisation, else its vocabulary) and its special tokens."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    special = json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str)
    return _sha256_text(vocab + "\0" + special)


def data_rules_digest() -> str:
    """sha256 over lorapilot's data preparation code (engine/data's modules): another lorapilot renders, masks or keeps
    rows by other rules. "" where the sources cannot be read (nothing to say then)."""
    h = hashlib.sha256()
    try:
        for path in sorted(Path(__file__).parent.glob("*.py")):
            h.update(path.name.encode() + b"\0")
            hash_file(path, h)
    except OSError:
        return ""
    return h.hexdigest()


def _library_versions() -> dict[str, str]:
    """The versions of the libraries that tokenize and render chat templates."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("transformers", "tokenizers", "jinja2"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
