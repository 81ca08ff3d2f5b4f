"""Units of length and time every reader shares: one table of each.

Length units are kept by their UDUNITS-2 name (the names NGFF uses) with their size in Angstrom;
symbols and other spellings (OME ``UnitsLength`` symbols, NIfTI's ``xyzt_units`` names, common
abbreviations) map to a name. Time units likewise, by the names ``metadata.json``'s
``time_info`` uses. Readers decide how they look a unit up (NGFF ignores case; OME symbols are
case-sensitive, ``Mm`` is not ``mm``) and what an unknown unit means; the tables are here only.
"""

from __future__ import annotations

__all__ = [
    "ANGSTROM_PER",
    "LENGTH_SYMBOLS",
    "TIME_NAMES",
    "TIME_SYMBOLS",
    "angstrom_per",
    "length_name",
    "time_name",
]

# Angstrom per unit, by UDUNITS-2 name
ANGSTROM_PER: dict[str, float] = {
    "yoctometer": 1e-14,
    "zeptometer": 1e-11,
    "attometer": 1e-8,
    "femtometer": 1e-5,
    "picometer": 1e-2,
    "angstrom": 1.0,
    "nanometer": 10.0,
    "micrometer": 1e4,
    "millimeter": 1e7,
    "centimeter": 1e8,
    "decimeter": 1e9,
    "meter": 1e10,
    "hectometer": 1e12,
    "kilometer": 1e13,
    "megameter": 1e16,
    "gigameter": 1e19,
    "terameter": 1e22,
    "petameter": 1e25,
    "exameter": 1e28,
    "zettameter": 1e31,
    "yottameter": 1e34,
    "inch": 2.54e8,
    "foot": 3.048e9,
    "yard": 9.144e9,
    "mile": 1.609344e13,
    "parsec": 3.0856775814913673e26,
}

# symbols and spellings -> name (OME UnitsLength symbols are case-sensitive: ``Pm`` is a
# petametre, ``pm`` a picometre; lower-case spellings serve the readers that ignore case)
LENGTH_SYMBOLS: dict[str, str] = {
    "Ym": "yottameter",
    "Zm": "zettameter",
    "Em": "exameter",
    "Pm": "petameter",
    "Tm": "terameter",
    "Gm": "gigameter",
    "Mm": "megameter",
    "km": "kilometer",
    "hm": "hectometer",
    "m": "meter",
    "dm": "decimeter",
    "cm": "centimeter",
    "mm": "millimeter",
    "\u00b5m": "micrometer",  # micro sign (the OME schema's spelling)
    "\u03bcm": "micrometer",  # Greek mu
    "um": "micrometer",
    "micron": "micrometer",
    "nm": "nanometer",
    "pm": "picometer",
    "fm": "femtometer",
    "am": "attometer",
    "zm": "zeptometer",
    "ym": "yoctometer",
    "\u00c5": "angstrom",  # A with ring (the OME schema's spelling)
    "\u00e5": "angstrom",  # its lower case (and that of the Angstrom sign)
    "\u212b": "angstrom",  # Angstrom sign
    "A": "angstrom",
    "in": "inch",
    "ft": "foot",
    "yd": "yard",
    "mi": "mile",
    "pc": "parsec",
}

# time units by name (what ``time_info.units`` holds)
TIME_NAMES: frozenset[str] = frozenset(
    f"{prefix}second"
    for prefix in (
        *("atto", "femto", "pico", "nano", "micro", "milli", "centi", "deci", ""),
        *("hecto", "kilo", "mega", "giga", "tera", "peta", "exa", "zetta", "yotta"),
        *("yocto", "zepto"),
    )
) | {"minute", "hour", "day"}

# symbols and spellings -> name (OME UnitsTime symbols, NIfTI's xyzt_units names)
TIME_SYMBOLS: dict[str, str] = {
    "s": "second",
    "sec": "second",
    "ms": "millisecond",
    "msec": "millisecond",
    "\u00b5s": "microsecond",
    "\u03bcs": "microsecond",
    "us": "microsecond",
    "usec": "microsecond",
    "ns": "nanosecond",
    "ps": "picosecond",
    "fs": "femtosecond",
    "min": "minute",
    "h": "hour",
    "d": "day",
}


def length_name(unit: str) -> str | None:
    """The name of a length unit given by name or symbol (None: not a known length unit).

    >>> length_name("µm"), length_name("nanometer"), length_name("pixel")
    ('micrometer', 'nanometer', None)
    """
    if unit in ANGSTROM_PER:
        return unit
    return LENGTH_SYMBOLS.get(unit)


def angstrom_per(unit: str) -> float | None:
    """Angstrom per ``unit`` (a name or symbol; None: not a known length unit).

    >>> angstrom_per("nm"), angstrom_per("micron"), angstrom_per("Å")
    (10.0, 10000.0, 1.0)
    """
    name = length_name(unit)
    return None if name is None else ANGSTROM_PER[name]


def time_name(unit: str) -> str | None:
    """The name of a time unit given by name or symbol (None: not a known time unit).

    >>> time_name("ms"), time_name("second"), time_name("hz")
    ('millisecond', 'second', None)
    """
    if unit in TIME_NAMES:
        return unit
    return TIME_SYMBOLS.get(unit)
