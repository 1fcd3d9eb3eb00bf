"""Submission intake: find submissions and read only their allow-listed files, safely.

A submission is ``SUBMITTED/<student_id>/`` (a folder) or ``SUBMITTED/<student_id>.zip``. In
it, the graded package is the one folder named ``hw2`` that holds graded modules, found at
most ``SEARCH_DEPTH`` folders down:

- ``<id>/hw2/hw2/cnn.py``: nbgrader's layout (``nbgrader collect`` / ``zip_collect``), the
  notebook beside the package;
- ``<id>.zip`` holding ``hw2/cnn.py``: the zip of our submit tool;
- a student's repository, folder or zip, with the package one or two folders down
  (``hw2w26/hw2/cnn.py``, ``HW2/hw2/cnn.py``); a note says where it was found.

More than one candidate package is refused with a note naming them. Only
``tools.checks.STUDENT_FILES`` are read; links, special files, oversized files, path
traversal and zip bombs are refused with a note.
"""

import hashlib
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cs236781.submit import STUDENT_ID_RE as ID_RE
from tools.checks import STUDENT_FILES

FILE_CAP = 1 << 20  # bytes of one student file
ZIP_CAP = 16 << 20  # bytes of one zip
ZIP_ENTRIES_MAX = 20_000  # a student's repository zipped whole has thousands
ZIP_RATIO_MAX = 100  # uncompressed / compressed
PACKAGE = "hw2"
MODULE_NAMES = tuple(rel.split("/", 1)[1] for rel in STUDENT_FILES)
SEARCH_DEPTH = 3  # folders between the submission's top and the package, the package included
WALK_MAX = 5_000  # folders looked at in one submission folder
SKIP_DIRS = {".git", "__MACOSX", "__pycache__", ".ipynb_checkpoints", "node_modules", ".venv"}


@dataclass
class Submission:
    """One student's allow-listed files, and notes on whatever was refused or ignored."""

    student_id: str
    source: str  # "dir" or "zip"
    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """A hash of the files taken, to tell whether stored results are still current."""
        h = hashlib.sha256()
        for rel in sorted(self.files):
            h.update(rel.encode() + b"\0" + hashlib.sha256(self.files[rel]).digest())
        return h.hexdigest()


def find_submissions(submitted: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """``(student_id, path)`` of every submission, sorted, and notes on entries skipped.

    A student with both a folder and a zip is graded from the folder.
    """
    found: dict[str, Path] = {}
    skipped = []
    for entry in sorted(os.scandir(submitted), key=lambda e: e.name):
        name = entry.name
        if entry.is_file(follow_symlinks=False) and name.endswith(".zip"):
            sid = name.removesuffix(".zip")
        elif entry.is_dir(follow_symlinks=False):
            sid = name
        else:
            if not name.startswith("."):
                skipped.append(f"{name}: not a folder or a .zip, skipped")
            continue
        if not ID_RE.match(sid):
            skipped.append(f"{name}: {sid!r} is not a valid student id, skipped")
            continue
        if sid in found and found[sid].is_dir():
            skipped.append(f"{name}: {sid} also has a folder, which is graded")
            continue
        found[sid] = Path(entry.path)
    return sorted(found.items()), skipped


def load_submission(student_id: str, path: Path) -> Submission:
    """Read the allow-listed files of one submission (a folder or a zip)."""
    if path.suffix == ".zip" and not path.is_dir():
        return _load_zip(student_id, path)
    return _load_dir(student_id, path)


def _choose_package(candidates: list[str], notes: list[str]) -> str | None:
    """The one candidate package folder (relative, "" for none found), noting the choice."""
    if len(candidates) > 1:
        names = ", ".join(f"{c}/" for c in candidates)
        notes.append(
            f"{len(candidates)} folders named {PACKAGE}/ hold graded files ({names}): "
            f"refused, submit exactly one {PACKAGE}/ package"
        )
        return None
    if not candidates:
        return None
    if candidates[0] != PACKAGE:
        notes.append(f"graded files taken from {candidates[0]}/")
    return candidates[0]


def _package_candidates_in_dir(path: Path, notes: list[str]) -> list[str]:
    """Folders named ``hw2`` that hold a graded module, at most ``SEARCH_DEPTH`` down."""
    found, seen = [], 0
    for here, dirs, files in os.walk(path, followlinks=False):
        rel = Path(here).relative_to(path)
        depth = len(rel.parts)
        seen += 1
        if seen > WALK_MAX:
            notes.append(f"more than {WALK_MAX} folders: the search for {PACKAGE}/ stopped")
            break
        if rel.name == PACKAGE and depth >= 1 and any(m in files for m in MODULE_NAMES):
            found.append(rel.as_posix())
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS) if depth < SEARCH_DEPTH else []
    return sorted(found)


def _open_dir(parts: tuple[str, ...], top: int) -> int:
    """A descriptor of the folder ``parts`` under ``top``, never following a link."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.dup(top)
    try:
        for part in parts:
            nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _load_dir(student_id: str, path: Path) -> Submission:
    sub = Submission(student_id, "dir")
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        top = os.open(path, dir_flags)
    except OSError as e:
        sub.notes.append(f"the submission folder cannot be opened ({e.strerror})")
        return sub
    try:
        if os.path.islink(path / PACKAGE):
            sub.notes.append(f"{PACKAGE}/ is not a plain folder (a link?): refused")
            return sub
        package = _choose_package(_package_candidates_in_dir(path, sub.notes), sub.notes)
        if package is None:
            return sub
        try:
            dfd = _open_dir(tuple(package.split("/")), top)
        except OSError:
            sub.notes.append(f"{package}/ is not a plain folder (a link?): refused")
            return sub
        try:
            for rel in STUDENT_FILES:
                name = rel.split("/", 1)[1]
                shown = f"{package}/{name}"
                data = _read_regular(dfd, name, shown, sub.notes)
                if data is not None:
                    sub.files[rel] = data
        finally:
            os.close(dfd)
    finally:
        os.close(top)
    return sub


def _read_regular(dir_fd: int, name: str, rel: str, notes: list[str]) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)  # fmt: skip
    except FileNotFoundError:
        return None
    except OSError:
        notes.append(f"{rel} is a link or cannot be read: refused")
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            notes.append(f"{rel} is not a regular file: refused")
            return None
        if st.st_size > FILE_CAP:
            notes.append(f"{rel} is larger than {FILE_CAP} bytes: refused")
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(FILE_CAP + 1)
        if len(data) > FILE_CAP:
            notes.append(f"{rel} is larger than {FILE_CAP} bytes: refused")
            return None
        return data
    finally:
        os.close(fd)


def _zip_name_problem(name: str) -> str | None:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        return "an absolute or Windows path"
    if any(part in ("..", "") for part in name.rstrip("/").split("/")):
        return "a path that leaves the folder"
    return None


def _load_zip(student_id: str, path: Path) -> Submission:
    sub = Submission(student_id, "zip")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        sub.notes.append(f"{path.name} cannot be opened ({e.strerror})")
        return sub
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode) or os.fstat(f.fileno()).st_size > ZIP_CAP:
            sub.notes.append(f"{path.name} is not a regular file of at most {ZIP_CAP} bytes")
            return sub
        try:
            with zipfile.ZipFile(f) as zf:
                _read_zip_entries(zf, sub)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
            sub.files.clear()
            sub.notes.append(f"{path.name} is not a readable zip ({e})")
    return sub


def _zip_package(infos: list[zipfile.ZipInfo], notes: list[str]) -> str | None:
    """The prefix (``"a/b/hw2/"``) of the one ``hw2`` package folder in a zip."""
    candidates = set()
    for info in infos:
        parts = info.filename.split("/")
        if (
            len(parts) >= 2
            and parts[-2] == PACKAGE
            and parts[-1] in MODULE_NAMES
            and len(parts) - 1 <= SEARCH_DEPTH
            and not SKIP_DIRS.intersection(parts[:-1])
            and _zip_name_problem(info.filename) is None
        ):
            candidates.add("/".join(parts[:-1]))
    package = _choose_package(sorted(candidates), notes)
    return None if package is None else package + "/"


def _read_zip_entries(zf: zipfile.ZipFile, sub: Submission) -> None:
    infos = zf.infolist()
    if len(infos) > ZIP_ENTRIES_MAX:
        sub.notes.append(f"the zip has {len(infos)} entries (at most {ZIP_ENTRIES_MAX}): refused")
        return
    for info in infos:
        problem = _zip_name_problem(info.filename)
        if problem:
            sub.notes.append(f"zip entry {info.filename!r} is {problem}: refused")
    prefix = _zip_package(infos, sub.notes)
    if prefix is None:
        return
    outside = 0
    for info in infos:
        name = info.filename
        if _zip_name_problem(name) or info.is_dir():
            continue
        if not name.startswith(prefix):
            outside += 1
            continue
        rel = PACKAGE + "/" + name.removeprefix(prefix)
        if rel not in STUDENT_FILES:
            sub.notes.append(f"zip entry {name!r} is not a graded file: ignored")
            continue
        if stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG):
            sub.notes.append(f"zip entry {name!r} is a link or special file: refused")
            continue
        if rel in sub.files:
            sub.notes.append(f"zip entry {name!r} appears twice: the first one is used")
            continue
        if info.file_size > FILE_CAP or info.file_size > ZIP_RATIO_MAX * max(
            info.compress_size, 1024
        ):
            sub.notes.append(f"zip entry {name!r} is too large or too compressed: refused")
            continue
        with zf.open(info) as member:
            data = member.read(FILE_CAP + 1)
        if len(data) > FILE_CAP:
            sub.notes.append(f"zip entry {name!r} is larger than {FILE_CAP} bytes: refused")
            continue
        sub.files[rel] = data
    if outside:
        sub.notes.append(f"{outside} zip entries outside {prefix} are not graded: ignored")
