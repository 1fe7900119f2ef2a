"""What every fixture set is made with: `make` writes one device's folder (see README.md)."""
# ruff: noqa: E501

import json
import shutil
import sys
from pathlib import Path

BASE = Path(__file__).resolve().parent
sys.path.insert(0, str(BASE.parents[2]))

NOW = "2024-11-25T10:00:00+00:00"


def make(name, platform, commands, files, note):
    d = BASE / name
    if d.exists():
        shutil.rmtree(d)
    (d / "commands").mkdir(parents=True)
    (d / "root").mkdir()
    index = {}
    for i, (argv, spec) in enumerate(commands):
        key = " ".join(argv)
        if isinstance(spec, str):
            spec = {"stdout": spec}
        entry = {"rc": spec.get("rc", 0)}
        slug = (
            f"{i:02d}-"
            + "".join(
                c if c.isalnum() else "_"
                for c in argv[0].split("/")[-1] + "_" + "_".join(argv[1:3])
            )[:40]
        )
        for stream in ("stdout", "stderr"):
            if stream in spec:
                fn = f"{slug}.{stream}.txt"
                data = spec[stream]
                (d / "commands" / fn).write_bytes(
                    data if isinstance(data, bytes) else data.encode()
                )
                entry[stream] = fn
        index[key] = entry
    (d / "commands" / "index.json").write_text(
        json.dumps(index, indent=1, ensure_ascii=False) + "\n"
    )
    for path, content in files.items():
        p = d / "root" / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            p.mkdir(exist_ok=True)
        else:
            p.write_text(content)
    (d / "meta.json").write_text(
        json.dumps({"platform": platform, "now": NOW, "note": note}, indent=1) + "\n"
    )


def sysblock(name, dm_name=None, uuid=None, slaves=()):
    out = {f"/sys/class/block/{name}/dev": "259:0\n", f"/sys/class/block/{name}/slaves": None}
    if dm_name:
        out[f"/sys/class/block/{name}/dm/name"] = dm_name + "\n"
        out[f"/sys/class/block/{name}/dm/uuid"] = uuid + "\n"
    for s in slaves:
        out[f"/sys/class/block/{name}/slaves/{s}"] = ""  # a symlink on a real system
    return out


def gs(user, schema, key):
    return ["runuser", "-u", user, "--", "gsettings", "get", schema, key]


S, SS = "org.gnome.desktop.session", "org.gnome.desktop.screensaver"
NOTFOUND = {"rc": 127, "stderr": "command not found\n"}
