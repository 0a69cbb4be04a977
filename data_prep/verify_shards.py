"""Check shards byte for byte against their index: every file's size, MDS header and xxh64 hash.

    python data_prep/verify_shards.py DIR [DIR ...]

DIR is what data_prep/convert_dataset.py wrote (manifest.json with train/ and val/) or one split folder
(index.json). Run it after copying shards to a new disk or node: training checks sizes and headers on every
start but hashes only the shards it downloads from a remote, since hashing reads every byte. Prints a table
per split; any shard that is missing, damaged, changed or unreadable is an error naming it (exit 2). A
streaming cache of a remote (`data.local` beside `data.remote`) holds only the shards downloaded so far, so
its other shards count as missing here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from composer_bert.data.contract import MANIFEST_NAME, read_manifest
from composer_bert.data.load.shard_checks import INDEX_NAME, REBUILD, read_split_index, verify_split
from composer_bert.errors import ArgumentParser, UserError, cli_entry
from composer_bert.run.remote import is_remote


def split_dirs(root: str) -> list[Path]:
    """The split folders under `root` (a converted dataset), or `root` itself if it is one split."""
    if is_remote(root):
        raise UserError(
            f"'{root}' is a bucket; verify_shards reads local folders (streaming checks each shard's hash as it "
            "downloads it from data.remote)"
        )
    path = Path(root)
    if not path.exists():
        raise UserError(f"'{root}' does not exist; pass a folder that data_prep/convert_dataset.py wrote")
    if (path / INDEX_NAME).is_file():
        return [path]
    if (path / MANIFEST_NAME).is_file():  # every split the manifest lists must be there, with its index
        listed = read_manifest(path).get("splits", {})
        missing = [name for name in sorted(listed) if not (path / name / INDEX_NAME).is_file()]
        if missing:
            raise UserError(
                f"'{root}' lacks {missing[0]}/{INDEX_NAME} of split '{missing[0]}', which {MANIFEST_NAME} lists; "
                "the copy is incomplete: copy the folder again, or rebuild it with data_prep/convert_dataset.py"
            )
    splits = sorted(child for child in path.iterdir() if (child / INDEX_NAME).is_file()) if path.is_dir() else []
    if not splits:
        raise UserError(
            f"'{root}' holds no shards (no {INDEX_NAME} in it or its subfolders); "
            "pass a folder that data_prep/convert_dataset.py wrote"
        )
    return splits


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="a converted dataset or one of its split folders")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    splits = [split for root in args.dirs for split in split_dirs(root)]
    total = sum(  # the bytes verify_split reads: the raw file where it is there, else the compressed one
        shard.size if (split / shard.basename).is_file() else shard.zip_size or 0
        for split in splits
        for shard in read_split_index(str(split))
    )
    rows, problems = [], []
    with tqdm(total=total, desc="hashing shards", unit="B", unit_scale=True, disable=args.no_progress) as bar:
        for split in splits:
            shards, read, found = verify_split(str(split), bar.update)
            rows.append((str(split), shards, read, "ok" if not found else f"{len(found)} bad"))
            problems += found
    width = max(len(row[0]) for row in rows)
    print(f"{'split':<{width}}  {'shards':>6}  {'MB read':>9}  result")
    for split, shards, read, result in rows:
        print(f"{split:<{width}}  {shards:>6}  {read / 1e6:>9.1f}  {result}", flush=True)
    if problems:
        more = f" (and {len(problems) - 1} more shard(s), listed above)" if len(problems) > 1 else ""
        for problem in problems[1:]:
            print(f"  {problem}")
        raise UserError(f"{problems[0]}{more}; copy those shards again from their source, or {REBUILD}")


if __name__ == "__main__":
    main(sys.argv[1:])
