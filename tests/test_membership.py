"""Direct membership derived across every members list of a batch (and the store)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ingest.files import ingest_files
from ingest.membership import derive_direct
from ingest.store import Store

ENG = "6f1d2c3b-0000-4000-8000-00000000e001"
PLAT = "6f1d2c3b-0000-4000-8000-00000000p002".replace("p", "a")


def _members(group: str, *members: tuple[str, str]) -> dict:
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
        "value": [
            {
                "@odata.type": f"#microsoft.graph.{kind}",
                "id": mid,
                "displayName": mid,
                **({"userPrincipalName": f"{mid}@contoso.example"} if kind == "user" else {}),
            }
            for mid, kind in members
        ],
    }


def test_nested_members_are_not_direct_when_the_nested_list_is_in_the_batch(tmp_path: Path):
    # Engineering contains ada directly and the Platform group; Platform contains bob.
    # Engineering's transitiveMembers lists ada, Platform and bob; bob is only nested.
    eng = tmp_path / f"members-{ENG}.json"
    eng.write_text(json.dumps(_members(ENG, ("ada", "user"), (PLAT, "group"), ("bob", "user"))))
    plat = tmp_path / f"members-{PLAT}.json"
    plat.write_text(json.dumps(_members(PLAT, ("bob", "user"))))
    store = Store(tmp_path / "s")
    ingest_files(store, [eng, plat])
    gm = store.read("group_members").set_index(["group_id", "member_id"])["direct"]
    assert gm.to_dict() == {
        (ENG, "ada"): True,
        (ENG, PLAT): True,
        (ENG, "bob"): False,
        (PLAT, "bob"): True,
    }


def test_nested_list_from_an_earlier_ingest_counts(tmp_path: Path):
    store = Store(tmp_path / "s")
    plat = tmp_path / f"members-{PLAT}.json"
    plat.write_text(json.dumps(_members(PLAT, ("bob", "user"))))
    ingest_files(store, [plat])
    eng = tmp_path / f"members-{ENG}.json"
    eng.write_text(json.dumps(_members(ENG, (PLAT, "group"), ("bob", "user"))))
    ingest_files(store, [eng])
    gm = store.read("group_members").set_index(["group_id", "member_id"])["direct"]
    assert not gm[(ENG, "bob")]
    assert gm[(PLAT, "bob")]


def test_without_the_nested_list_every_member_stays_direct():
    batch = pd.DataFrame(
        {
            "group_id": ["eng", "eng"],
            "member_id": ["platform", "bob"],
            "member_type": ["group", "user"],
            "direct": [True, True],
        }
    )
    assert derive_direct(batch)["direct"].tolist() == [True, True]


def test_first_seen_is_carried_while_listed_and_restarts_after_a_gap():
    from ingest.membership import carry_first_seen
    from tests.support.frames import frame, ts

    t1, t2, t3 = ts("2026-11-16T10:00:00Z"), ts("2026-11-17T10:00:00Z"), ts("2026-11-18T10:00:00Z")
    first = carry_first_seen(
        frame("group_members", [{"group_id": "g", "member_id": m} for m in ("a", "b")]), None, t1
    )
    assert first["first_seen_at"].tolist() == [t1, t1]
    second = carry_first_seen(
        frame("group_members", [{"group_id": "g", "member_id": m} for m in ("a", "c")]), first, t2
    )
    assert dict(zip(second["member_id"], second["first_seen_at"], strict=True)) == {
        "a": t1,
        "c": t2,
    }
    # b was dropped by the second snapshot: listed again, it is first seen anew.
    third = carry_first_seen(
        frame("group_members", [{"group_id": "g", "member_id": "b"}]), second, t3
    )
    assert third["first_seen_at"].tolist() == [t3]


def test_a_store_written_before_first_seen_at_existed_still_reads_and_writes(tmp_path: Path):
    import pyarrow.parquet as pq

    from ingest.membership import carry_first_seen
    from tests.support.frames import frame, ts

    store = Store(tmp_path / "s")
    rows = frame("group_members", [{"group_id": "g", "member_id": m} for m in ("a", "b")])
    with store.batch(source="file") as b:
        b.add({"group_members": rows})
    # Rewrite the part as an older provlens wrote it: without the first_seen_at column.
    (part,) = (tmp_path / "s" / "parts" / "group_members").glob("*.parquet")
    pq.write_table(pq.read_table(part).drop(["first_seen_at"]), part)
    old = store.read("group_members")
    assert old["first_seen_at"].isna().all() and old["member_id"].tolist() == ["a", "b"]
    t = ts("2026-11-17T10:00:00Z")
    new = carry_first_seen(
        frame("group_members", [{"group_id": "g", "member_id": m} for m in ("a", "c")]), old, t
    )
    with store.batch(source="file") as b:
        b.add({"group_members": new})
        b.replace_groups("group_members", ["g"])
    after = store.read("group_members").set_index("member_id")["first_seen_at"]
    assert after.to_dict() == {"a": t, "c": t}  # nothing older was known for a
