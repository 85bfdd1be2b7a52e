"""Where the simulator's observations are made: Danish observation hot spots.

Shared by the metadata generator (coordinates and GADM-style region names around a
site) and the profile table (the nearest site of each real record).
"""

from __future__ import annotations

# (municipality, latitude, longitude, level1 index, level1 name, weight): observation hot spots.
DANISH_SITES = [
    ("København", 55.68, 12.57, 1, "Hovedstaden", 3.0),
    ("Hillerød", 55.93, 12.31, 1, "Hovedstaden", 1.5),
    ("Bornholm", 55.13, 14.90, 1, "Hovedstaden", 0.7),
    ("Aarhus", 56.16, 10.20, 2, "Midtjylland", 2.0),
    ("Silkeborg", 56.17, 9.55, 2, "Midtjylland", 1.2),
    ("Viborg", 56.45, 9.40, 2, "Midtjylland", 0.8),
    ("Herning", 56.14, 8.97, 2, "Midtjylland", 0.6),
    ("Randers", 56.46, 10.04, 2, "Midtjylland", 0.7),
    ("Ringkøbing-Skjern", 56.00, 8.40, 2, "Midtjylland", 0.5),
    ("Aalborg", 57.05, 9.92, 3, "Nordjylland", 1.2),
    ("Frederikshavn", 57.44, 10.54, 3, "Nordjylland", 0.6),
    ("Thisted", 56.96, 8.69, 3, "Nordjylland", 0.6),
    ("Roskilde", 55.64, 12.08, 4, "Sjælland", 1.0),
    ("Næstved", 55.23, 11.76, 4, "Sjælland", 0.8),
    ("Holbæk", 55.72, 11.71, 4, "Sjælland", 0.6),
    ("Guldborgsund", 54.77, 11.87, 4, "Sjælland", 0.5),
    ("Odense", 55.40, 10.39, 5, "Syddanmark", 1.2),
    ("Svendborg", 55.06, 10.61, 5, "Syddanmark", 0.6),
    ("Esbjerg", 55.47, 8.45, 5, "Syddanmark", 0.7),
    ("Vejle", 55.71, 9.54, 5, "Syddanmark", 0.8),
    ("Kolding", 55.49, 9.47, 5, "Syddanmark", 0.6),
    ("Sønderborg", 54.91, 9.79, 5, "Syddanmark", 0.6),
]
DENMARK_BOX = (54.56, 57.75, 8.07, 15.20)  # lat min, lat max, lon min, lon max
