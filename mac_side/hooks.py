"""The logic behind the shims in ``hooks/`` (``renderloop hook NAME``).

* ``pre-commit`` validates the staged batch files, folds the staged reviews'
  new verdicts into ``ledger.jsonl`` (appended, then staged into the index the
  commit is built from) and refuses a ledger whose existing lines changed.
* ``post-merge``, ``post-rewrite`` and ``post-checkout`` write or update the
  reviews of batches with new renders since the last commit they processed,
  and stage them.

Which hook fires on a pull (git 2.39, checked by the tests): a plain pull, and
``pull --rebase`` with no local commits, fire post-merge; ``pull --rebase``
over local commits fires post-checkout (the rebase starting: ignored) then
post-rewrite. ``git rebase`` with nothing to replay fires only post-checkout,
during the rebase, when the index must not be touched: a small detached
process then waits for the rebase to finish and writes the review.

Every hook also looks, cheaply, for a remote branch rewritten with verdicts
lost (:mod:`mac_side.ledger_watch`) and says it once, whatever else it does.

Each hook returns a :class:`Said`: what to tell the person, and the problems
that stop a commit; the ``hook`` command prints them.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from mac_side import autostash, ledger_watch
from mac_side.autostash import WAIT_FOR_REBASE
from mac_side.ledger import Fold, describe, fold
from mac_side.review import decode, parse, refresh_grids
from mac_side.review_update import batches_with_renders, update_reviews
from studio import checkout, git, grownblob
from studio.attributes import transforms
from studio.batch import LoadedBatch, is_batch_path, load_batch_bytes
from studio.capability import Capability, model_warnings, newest, range_problems
from studio.config import StudioConfig, check_workflows, parse_config, workflow_nodes
from studio.errors import InvalidFile, Problem
from studio.fsutil import (
    RefusedFile, link_problem, read_bounded, read_or_none, size_problem, write_atomic, write_text_atomic,
)
from studio.ledger import Ledger, append, guard
from studio.layout import (
    BATCH_SUFFIXES, CONFIG_NAME, LEDGER_NAME, RENDERS, REVIEW_NAME, STUDIO_ERROR_NAME, Studio, batch_id_problem,
)
from studio.limits import MAX_BATCH_BYTES, MAX_LEDGER_BYTES, MAX_RECORD_BYTES, MAX_REVIEW_BYTES, MAX_WORKFLOW_BYTES
from studio.record import RenderRecord, StudioErrorRecord
from studio.source import load_bytes
from studio.winpath import windows_path_problem

log = logging.getLogger("renderloop.hooks")

StagedConfig = Callable[[], tuple[Optional[StudioConfig], list[Problem]]]
REBASE_WAIT_SECONDS = 30.0
STATE_NAME = "reviewed-commit"
_NULL_SHA = re.compile(r"\A0+\Z")


@dataclass
class Said:
    """What a hook has to tell: lines for the person, and problems that stop the commit (pre-commit only)."""

    messages: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # shown, and the commit goes on
    alerts: list[str] = field(default_factory=list)  # for stderr, whatever the hook did: a rewritten remote


def run_hook(name: str, args: list[str]) -> Said:
    """Run the hook ``name`` in the repository of the current folder (nothing outside a studio)."""
    if name == "pre-commit":  # stage into the index the commit is built from, not the main one
        git.use_index(os.environ.get("GIT_INDEX_FILE"))
    studio = Studio.at(git.toplevel(Path.cwd()))
    if not studio.is_studio():
        return Said()
    said = pre_commit(studio) if name == "pre-commit" else _POST_HOOKS[name](studio, args)
    # after the hook's own work: a hook that fails leaves the rewrite for the next one to say
    said.alerts += [rewrite.message() for rewrite in ledger_watch.notice(studio.root)]  # cheap: see ledger_watch
    return said


# ---------------------------------------------------------------- pre-commit


def pre_commit(studio: Studio) -> Said:
    root = studio.root
    staged = git.staged_files(root)
    config = functools.cache(lambda: _staged_config(root))  # most commits touch no batch or review
    problems = [Problem(rel, 1, f"the Windows worker cannot check this path out: {why}")
                for rel in staged if (why := windows_path_problem(rel))]
    published = newest(root) if any(is_batch_path(rel) for rel in staged) else None
    warnings: list[Problem] = []
    for rel in staged:
        if is_batch_path(rel):
            found, warned = _batch_problems(root, rel, config, published)
            problems += found
            warnings += warned
    if CONFIG_NAME in staged or any(_maybe_workflow(rel) for rel in staged):
        problems += config()[1]  # the settings themselves (and the workflows they bind) are being changed
    if any(rel.rsplit("/", 1)[-1] == ".gitattributes" for rel in staged):
        problems += _attribute_problems(root)
    conflicts = conflict_markers(root, staged)
    if conflicts:  # a half-resolved merge: its verdicts cannot be read, nor its text committed
        return Said(problems=conflicts)
    staged_ledger = _StagedLedger(root)
    problems += staged_ledger.problems()
    reviews = [rel for rel in staged if _is_review_path(rel)]
    result = _fold_reviews(studio, reviews, staged_ledger, config) if reviews else Fold()
    problems += result.problems
    if problems:
        return Said(problems=list(dict.fromkeys(problems)), warnings=warnings)
    said = Said(warnings=warnings)
    if result.lines:
        append(studio.ledger_path, result.lines)
        grownblob.prepare_add(root, LEDGER_NAME, staged_ledger.staged)  # git add then only hashes it
        _stage_ledger(root)
        noun = "verdict" if len(result.lines) == 1 else "verdicts"
        said.messages.append(f"recorded {len(result.lines)} {noun} in {LEDGER_NAME} ({describe(result.lines)})")
    for rel, text in result.refreshed.items():  # comparison grids show the verdicts just typed
        write_text_atomic(root / rel, text)
        _stage(root, rel)
    said.messages += result.notes
    return said


_MARKER_LINES = r"^(<<<<<<< |=======$|>>>>>>> )"
_PATHS_PER_GREP = 500


def conflict_markers(root: Path, staged: list[str]) -> list[Problem]:
    """A problem for each staged text file holding git's conflict markers.

    Markers are a line starting ``<<<<<<< ``, then ``=======`` alone on a
    line, then a line starting ``>>>>>>> ``, in that order: the staged bytes
    are searched (binary files skipped) with one ``git grep`` per 500 paths.
    """
    found: dict[str, list[tuple[int, str]]] = {}
    for start in range(0, len(staged), _PATHS_PER_GREP):
        chunk = staged[start : start + _PATHS_PER_GREP]
        code, out, _ = git.run_bytes(root, "grep", "--cached", "-n", "-I", "-z", "-E", _MARKER_LINES, "--", *chunk, check=False)
        if code not in (0, 1):
            continue
        for row in out.split(b"\n"):
            parts = row.split(b"\0", 2)
            if len(parts) == 3 and parts[1].isdigit():
                found.setdefault(parts[0].decode("utf-8", "surrogateescape"), []).append((int(parts[1]), parts[2][:7].decode("ascii", "replace")))
    problems = []
    for rel, marks in sorted(found.items()):
        state, opened, middle = 0, 0, 0
        for line, mark in sorted(marks):
            if mark == "<<<<<<<":
                state, opened = 1, line
            elif mark == "=======" and state == 1:
                state, middle = 2, line
            elif mark == ">>>>>>>" and state == 2:
                problems.append(Problem(
                    rel, opened,
                    f"unresolved conflict (markers at lines {opened}, {middle} and {line}): keep what you want, "
                    "delete the marker lines, then commit",
                ))
                state = 0
    return problems


class _StagedLedger:
    """The ledger as staged, against the last commit's, read only as far as needed.

    Its blob id and size come first (one ``git cat-file``); when they are the
    last commit's nothing more is read. A staged ledger whose first bytes hash
    to the last commit's blob id only appended lines: those alone are checked.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        with git.ObjectReader(root) as objects:
            self.head = objects.blob_header(f"HEAD:{LEDGER_NAME}") if git.head(root) else None
            self.staged = objects.blob_header(f":{LEDGER_NAME}")
        self._bytes: Optional[bytes] = None

    def bytes(self) -> bytes:
        if self._bytes is None:
            self._bytes = (git.show(self.root, self.staged[0]) or b"") if self.staged else b""
        return self._bytes

    def problems(self) -> list[Problem]:
        for header in (self.staged, self.head):  # their sizes are asked of git before a byte is read
            too_large = size_problem(header[1], MAX_LEDGER_BYTES) if header else None
            if too_large:
                return [Problem(LEDGER_NAME, 1, too_large)]
        if self.staged == self.head:
            return []
        new = self.bytes()
        if self.head is None:
            return guard(b"", new, LEDGER_NAME, "(compared with the last commit)")
        old_id, old_size = self.head
        if starts_with_blob(new, old_id, old_size):
            return guard(new[:old_size], new, LEDGER_NAME)
        old = git.show(self.root, old_id) or b""
        return guard(old, new, LEDGER_NAME, "(compared with the last commit)")


def starts_with_blob(data: bytes, blob: str, size: int) -> bool:
    """True when the first ``size`` bytes of ``data`` are the blob ``blob`` (hashed as git hashes it)."""
    return len(data) >= size and checkout.blob_id(memoryview(data)[:size], len(blob)) == blob


def _fold_reviews(studio: Studio, reviews: list[str], staged: _StagedLedger, config: StagedConfig) -> Fold:
    """New ledger lines for the staged reviews, judged against the ledger they will be appended to.

    The ledger in the working tree is the staged one, or the staged one with
    lines appended (after an aborted commit): its verdicts in force come from
    :mod:`studio.verdicts` at the cost of what was appended since the last read.
    """
    total = Fold()
    root = studio.root
    same = git.ok(root, "diff-files", "--quiet", "--", LEDGER_NAME)  # stat calls: no read
    if same:
        ledger = Ledger.read(studio.ledger_path, quiet=True)  # its bad lines are the guard's to report
    else:
        working = read_or_none(studio.ledger_path, MAX_LEDGER_BYTES, studio.root, LEDGER_NAME)
        staged_id, staged_size = staged.staged or ("", 0)
        if working is not None and staged_id and starts_with_blob(working, staged_id, staged_size):
            unstaged = guard(working[:staged_size], working, LEDGER_NAME, "(unstaged change in the working tree)")
        else:
            unstaged = guard(staged.bytes(), working or b"", LEDGER_NAME, "(unstaged change in the working tree)")
        total.problems += unstaged
        if not unstaged and working is not None:
            ledger = Ledger.read(studio.ledger_path, quiet=True)
        else:
            ledger = Ledger.lenient(staged.bytes())
    reviewer = git.config_get(studio.root, "user.name")
    with git.ObjectReader(root) as staged_files:  # one git process for every record the reviews name
        for rel in reviews:
            result = _fold_review(studio.root, rel, config, ledger, reviewer, staged_files)
            total.lines += result.lines
            total.notes += result.notes
            total.problems += result.problems
            total.refreshed.update(result.refreshed)
    return total


def _stage_ledger(root: Path) -> None:
    _stage(root, LEDGER_NAME)


def _stage(root: Path, rel: str) -> None:
    """Stage ``rel`` into the index the commit is built from, and into the next real index.

    ``git commit PATH...`` builds the commit from a temporary index
    (``next-index-*.lock``) and writes the real index's next version to
    ``index.lock``, renamed into place after the commit: the ledger must be
    staged in both, or the real index would keep the old ledger.
    """
    git.add(root, rel)
    index = Path(os.environ.get("GIT_INDEX_FILE", ""))
    real_next = git.git_dir(root) / "index.lock"
    if index.name.startswith("next-index-") and real_next.is_file():
        git.run(root, "add", "--", rel, env={"GIT_INDEX_FILE": str(real_next)})


def staged_bytes(root: Path, rel: str, limit: int) -> Optional[bytes]:
    """A staged file's bytes (None: not staged), bounded like every read of the studio.

    A link or a submodule is refused as that file's error, and so is a blob over
    ``limit``, whose size is asked of git before a byte of it is read.
    """
    entry = git.out(root, "ls-files", "--stage", "--", rel).split()
    if not entry:
        return None
    mode, blob = entry[0], entry[1]
    if mode == "120000":
        target = (git.show(root, blob) or b"")[:80].decode("utf-8", "replace")
        raise RefusedFile(rel, link_problem(f"to {target!r}"))
    if mode not in ("100644", "100755"):
        raise RefusedFile(rel, "the file is not a regular file; renderloop reads only regular files")
    why = size_problem(int(git.out(root, "cat-file", "-s", blob).strip() or 0), limit)
    if why:
        raise RefusedFile(rel, why)
    return git.show(root, blob)


def _attribute_problems(root: Path) -> list[Problem]:
    """A staged .gitattributes must not transform what the worker commits: images, records, the ledger."""
    rendered = [p for p in git.out(root, "ls-files", "-z", "--", f"{RENDERS}/").split("\0")
                if p.endswith((".png", ".json"))]
    samples = [f"{RENDERS}/any-batch/any-image.png", f"{RENDERS}/any-batch/any-image.json", LEDGER_NAME]
    by_line: dict[tuple[str, int], Problem] = {}
    for t in transforms(root, [*samples, *rendered], cached=True):
        by_line.setdefault((t.file, t.line), Problem(t.file, t.line, t.message))
    return list(by_line.values())


def _maybe_workflow(rel: str) -> bool:
    """A JSON file outside renders/ and batches/ may be a workflow renderloop.yaml binds."""
    return rel.endswith(".json") and not rel.startswith(("renders/", "batches/"))


def _staged_config(root: Path) -> tuple[Optional[StudioConfig], list[Problem]]:
    try:
        raw = staged_bytes(root, CONFIG_NAME, MAX_BATCH_BYTES)
        if raw is None:
            return None, [Problem(CONFIG_NAME, 1, "renderloop.yaml is not in the commit: batch files cannot be checked")]
        doc = load_bytes(raw, CONFIG_NAME, json_syntax=False)
        config = parse_config(doc)
        check_workflows(config, doc, lambda rel: staged_bytes(root, rel, MAX_WORKFLOW_BYTES),  # as they are staged
                        workflow_nodes(root, config))
        return config, []
    except InvalidFile as exc:
        return None, exc.problems


def _batch_problems(root: Path, rel: str, config: StagedConfig,
                    published: Optional[Capability]) -> tuple[list[Problem], list[Problem]]:
    """Errors and warnings for a staged batch file: its schema, then what the newest worker to publish
    its capability file (``workers/``) says its servers accept and can render."""
    settings, problems = config()
    if settings is None:
        return problems, []
    try:
        loaded = load_batch_bytes(staged_bytes(root, rel, settings.limits.batch_bytes) or b"", rel, settings)
    except InvalidFile as exc:
        return exc.problems, []
    if published is None:
        return [], []
    return range_problems(loaded, published), model_warnings(loaded, published)


def _is_review_path(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) == 3 and parts[0] == RENDERS and parts[2] == REVIEW_NAME and batch_id_problem(parts[1]) is None


def _fold_review(
    root: Path, rel: str, config: StagedConfig, ledger: Ledger, reviewer: Optional[str], staged_files: git.ObjectReader
) -> Fold:
    batch_id = rel.split("/")[1]
    try:
        raw = staged_bytes(root, rel, MAX_REVIEW_BYTES) or b""
    except RefusedFile as exc:
        return Fold(problems=exc.problems)
    text, problems = decode(raw, rel)
    if problems:
        return Fold(problems=problems)
    batch, problems = _staged_batch(root, batch_id, rel, config)
    if problems:
        return Fold(problems=problems)

    staged_records = _staged_records(root, batch_id)

    def record_of(slug: str) -> Optional[RenderRecord]:
        mode, blob = staged_records.get(slug, ("", ""))
        if mode not in ("100644", "100755"):  # none, or a link or a submodule: no record
            return None
        header = staged_files.blob_header(blob)  # the size first: a record over the limit is not read
        if header is None or size_problem(header[1], MAX_RECORD_BYTES):
            return None
        try:
            return RenderRecord.model_validate_json(staged_files.blob(blob))
        except ValueError:
            return None

    result = fold(parse(text, rel), batch_id, batch, record_of, ledger, reviewer)
    if batch is not None and any(job.axes for job in batch.jobs):
        try:
            working = read_or_none(root / rel, MAX_REVIEW_BYTES, root, rel)
        except (InvalidFile, RefusedFile):
            working = None
        if working == raw:  # nothing unstaged in it: its grids can be redrawn and staged
            records = {job.slug: record for job in batch.jobs if (record := record_of(job.slug)) is not None}
            refreshed = refresh_grids(text, batch, records)
            if refreshed != text:
                result.refreshed[rel] = refreshed
    return result


def _staged_records(root: Path, batch_id: str) -> dict[str, tuple[str, str]]:
    """Slug -> (mode, blob id) of each record staged in ``renders/<batch_id>/``: one git call for them all."""
    found = {}
    for row in git.out(root, "ls-files", "--stage", "-z", "--", f"{RENDERS}/{batch_id}/").split("\0"):
        meta, _, rel = row.partition("\t")
        fields = meta.split()
        name = rel.rpartition("/")[2]
        if len(fields) == 3 and rel.count("/") == 2 and name.endswith(".json"):
            found[name[: -len(".json")]] = (fields[0], fields[1])
    return found


def _staged_batch(root: Path, batch_id: str, review: str, config: StagedConfig) -> tuple[Optional[LoadedBatch], list[Problem]]:
    """The batch file of a review as staged, or None when there is none."""
    paths = git.ls_files(root, *(f"batches/{batch_id}{suffix}" for suffix in BATCH_SUFFIXES))
    if not paths:
        return None, []
    settings, problems = config()
    if settings is None:
        return None, problems
    try:
        return load_batch_bytes(staged_bytes(root, paths[0], settings.limits.batch_bytes) or b"", paths[0], settings), []
    except InvalidFile as exc:
        first = exc.problems[0]
        return None, [Problem(review, 1, f"cannot check this review: its batch file is invalid ({first})")]



# ---------------------------------------------------------------- post-merge, post-rewrite, post-checkout


def post_merge(studio: Studio, args: list[str]) -> Said:
    if autostash.hand_over("post-merge", args, studio.root):  # the person's changes are still aside
        return Said()
    return write_reviews(studio, fallback=git.rev_parse(studio.root, "ORIG_HEAD"))


def post_rewrite(studio: Studio, args: list[str]) -> Said:
    if args[:1] != ["rebase"]:  # an amend brings no renders
        return Said()
    if autostash.hand_over("post-rewrite", args, studio.root):
        return Said()
    return write_reviews(studio, fallback=git.rev_parse(studio.root, "ORIG_HEAD"))


def post_checkout(studio: Studio, args: list[str]) -> Said:
    root = studio.root
    if args == [WAIT_FOR_REBASE]:
        return _after_rebase(studio)
    if len(args) != 3 or args[2] != "1":  # a file checkout
        return Said()
    old, new = args[0], args[1]
    if _rebase_starting(root):
        if _commits_to_replay(root, old, new) == 0:  # no post-rewrite will follow
            autostash.spawn_waiter(root)
        return Said()
    if git.current_branch(root) is None:  # a detached HEAD: bisect, a look at an old commit
        return Said()
    return write_reviews(studio, fallback=None if _NULL_SHA.match(old) else old)


def write_reviews(studio: Studio, fallback: Optional[str]) -> Said:
    """Update the review of every batch with renders new since the last commit processed."""
    root = studio.root
    head = git.head(root)
    if head is None:
        return Said()
    last = _last_processed(root) or fallback
    if last == head:
        return Said()
    batches = _batches_changed(studio, last, head) if last else batches_with_renders(studio)
    said = Said([outcome.line() for outcome in update_reviews(studio, batches, stage=True)] if batches else [])
    said.messages += _studio_error(studio, last, head)
    _set_last_processed(root, head)
    return said


def _studio_error(studio: Studio, old: Optional[str], new: str) -> list[str]:
    """The worker's renders/studio-error.json, when it arrived or changed: what it cannot render at all."""
    rel = f"{RENDERS}/{STUDIO_ERROR_NAME}"
    if old and not git.changed_files(studio.root, old, new, rel):
        return []
    try:
        raw = read_bounded(studio.renders_dir / STUDIO_ERROR_NAME, MAX_RECORD_BYTES, studio.root, rel)
        record = StudioErrorRecord.model_validate_json(raw)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except (RefusedFile, ValueError) as exc:
        return [f"the worker left {rel}, which cannot be read: {exc}"]
    return [f"the worker cannot render: {p.path}:{p.line}: {p.message} ({rel})" for p in record.problems]


def _batches_changed(studio: Studio, old: str, new: str) -> list[str]:
    """Batches with a render record or image added or changed between two commits."""
    found = set()
    for rel in git.changed_files(studio.root, old, new, RENDERS):
        parts = rel.split("/")
        if len(parts) != 3 or parts[2] == REVIEW_NAME or not parts[2].endswith((".json", ".png")):
            continue
        if (studio.root / rel).is_file() and batch_id_problem(parts[1]) is None:
            found.add(parts[1])
    return sorted(found)


def _state_path(root: Path) -> Path:
    return git.state_dir(root) / STATE_NAME


def _last_processed(root: Path) -> Optional[str]:
    try:
        text = _state_path(root).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return git.rev_parse(root, text) if text else None


def _set_last_processed(root: Path, commit: str) -> None:
    write_text_atomic(_state_path(root), commit + "\n")


# ---------------------------------------------------------------- rebases


def _rebase_dirs(root: Path) -> bool:
    gitdir = git.git_dir(root)
    return (gitdir / "rebase-merge").exists() or (gitdir / "rebase-apply").exists()


def _last_reflog(root: Path) -> str:
    code, stdout, _ = git.run(root, "log", "-g", "-1", "--format=%gs", "HEAD", check=False)
    return stdout.strip() if code == 0 else ""


def _rebase_starting(root: Path) -> bool:
    """True in the post-checkout a rebase fires as it starts (either backend)."""
    return _rebase_dirs(root) or "(start):" in _last_reflog(root)


def _commits_to_replay(root: Path, old: str, new: str) -> int:
    if _NULL_SHA.match(old):
        return 0
    code, stdout, _ = git.run(
        root, "rev-list", "--count", "--cherry-pick", "--right-only", "--no-merges", f"{new}...{old}", check=False
    )
    return int(stdout.strip() or 0) if code == 0 else 1


def _after_rebase(studio: Studio) -> Said:
    root = studio.root
    deadline = time.monotonic() + REBASE_WAIT_SECONDS
    while time.monotonic() < deadline:
        busy = _rebase_dirs(root) or autostash.pending(root) or "(start):" in _last_reflog(root)
        if not busy:
            if not resolve_review_conflicts(root):
                return Said()  # the person's changes came back with a conflict: theirs to resolve first
            return write_reviews(studio, fallback=git.rev_parse(root, "ORIG_HEAD"))
        time.sleep(0.05)
    return Said()  # still rebasing (stopped on a conflict?): post-rewrite will write the review


def resolve_review_conflicts(root: Path) -> bool:
    """Settle the conflicts a pull's autostash left in reviews; True when no conflict is left.

    The person's review came back from the stash as a conflict with the
    pulled one (another clone committed the review it generated). The stash
    holds what they typed (its work tree) and what they typed it over (its
    index: the review the hook had staged); a three-way merge of the pulled
    review with their typing, over that base, is clean unless both clones
    typed into the same lines. A clean result is written and staged; anything
    else stays git's conflict, for the person, markers and all (the
    pre-commit hook refuses to commit markers; the stash keeps their text).
    """
    unmerged = [rel for rel in git.out(root, "diff", "--name-only", "--diff-filter=U").splitlines() if rel]
    if not unmerged:
        return True
    code, reflog, _ = git.run(root, "log", "-g", "-1", "--format=%gs", "refs/stash", check=False)
    if code != 0 or reflog.strip() != "autostash":
        return False  # not a pull's autostash: nothing of ours
    left = []
    for rel in unmerged:
        merged = _merge_typed(root, rel) if _is_review_path(rel) else None
        if merged is None:
            left.append(rel)
            continue
        write_atomic(root / rel, merged)
        git.add(root, rel)
    return not left


def _merge_typed(root: Path, rel: str) -> Optional[bytes]:
    """The pulled review with the person's typing merged in, or None when it does not merge cleanly."""
    try:
        versions = [git.show(root, f"{rev}:{rel}", MAX_REVIEW_BYTES) for rev in ("refs/stash", "refs/stash^2", "HEAD")]
    except git.TooLarge:
        return None
    if any(v is None for v in versions):
        return None
    folder = git.state_dir(root) / "merge"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in zip(("typed", "staged", "pulled"), versions):
        path = folder / name
        path.write_bytes(data or b"")
        paths.append(str(path))
    code, out, _ = git.run_bytes(root, "merge-file", "-p", "-q", *paths, check=False)
    return out if code == 0 else None


_POST_HOOKS: dict[str, Callable[[Studio, list[str]], Said]] = {
    "post-merge": post_merge,
    "post-rewrite": post_rewrite,
    "post-checkout": post_checkout,
}
