"""Tiny seeded DF20-format metadata for the store tests (all 34 DF20 columns)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from store.reference import poison_status

DF20_COLUMNS = (
    "observationID,year,month,day,countryCode,locality,taxonID,scientificName,kingdom,phylum,"
    "class,order,family,genus,specificEpithet,taxonRank,species,level0Gid,level0Name,level1Gid,"
    "level1Name,level2Gid,level2Name,ImageUniqueID,Substrate,rightsHolder,Latitude,Longitude,"
    "CoorUncert,Habitat,image_path,class_id,MetaSubstrate,poisonous"
).split(",")
SUBSTRATES = ["soil", "wood", "leaf or needle litter", "bark"]
HABITATS = ["Deciduous woodland", "Bog woodland", "Mixed woodland (with coniferous and deciduous trees)"]


def make_rows(n_obs: int, seed: int = 0, first_id: int = 1000, classes=(0, 1, 2, 3),
              images_per_obs: int = 2) -> list[dict]:
    """Valid DF20 rows: ``n_obs`` observations with ``images_per_obs`` images each."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_obs):
        oid = first_id + k
        cid = int(classes[k % len(classes)])
        obs = {c: "" for c in DF20_COLUMNS}
        obs.update(
            observationID=str(oid), year=str(2015 + k % 5), month=str(1 + k % 12),
            day=str(1 + k % 28), countryCode="DK", locality=f"Forest {k % 3}",
            taxonID=str(10 + cid), scientificName=f"Genus{cid} species{cid} Fr.",
            kingdom="Fungi", phylum="Basidiomycota", **{"class": "Agaricomycetes",
                                                        "order": "Agaricales"},
            family=f"Family{cid % 2}", genus=f"Genus{cid}", specificEpithet=f"species{cid}",
            taxonRank="SPECIES", species=f"Genus{cid} species{cid}", level0Gid="DNK",
            level0Name="Denmark", level1Gid="DNK.1_1", level1Name="Hovedstaden",
            level2Gid="DNK.1.1_1", level2Name="Gribskov", Substrate=SUBSTRATES[k % 4],
            rightsHolder="Someone", Latitude=f"{rng.uniform(54.5, 57.5):.5f}",
            Longitude=f"{rng.uniform(8.0, 12.6):.5f}", CoorUncert="10.0",
            Habitat=HABITATS[k % 3], class_id=str(cid), MetaSubstrate="",
            poisonous=str(int(poison_status().get(cid, False))),  # the official flag, as DF20
        )
        for j in range(images_per_obs):
            row = dict(obs)
            row.update(ImageUniqueID=f"u{oid}-{j}", image_path=f"{oid}-{j}.JPG")
            rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict], columns=DF20_COLUMNS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def bad_rows(template: dict) -> list[tuple[dict, str]]:
    """One malformed row of each kind, with a fragment of the expected reason."""
    cases = [
        ({"Latitude": "91.5"}, "latitude"),
        ({"Longitude": "-180.5"}, "longitude"),
        ({"month": "13"}, "month"),
        ({"day": "0"}, "day"),
        ({"observationID": ""}, "missing observation id"),
        ({"image_path": ""}, "missing image_path"),
        ({"Latitude": "north"}, "unparseable latitude"),
        ({"class_id": "1604"}, "unknown class id"),
        ({"year": "20x5"}, "unparseable year"),
    ]
    out = []
    for k, (change, reason) in enumerate(cases):
        row = dict(template)
        row.update(observationID=str(900000 + k), image_path=f"{900000 + k}-0.JPG")
        row.update(change)
        out.append((row, reason))
    return out
