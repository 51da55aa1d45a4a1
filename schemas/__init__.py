"""JSON Schema (draft 2020-12) for every document and wire message, a cached validator, the closed vocabularies.

The bottom layer: it imports nothing from the product (``registry``, ``agreements``, ``federation``), only
the standard library, ``jsonschema`` and ``referencing``, so every other layer may import it.
"""

from schemas.loader import (
    BASE_URI,
    SchemaError,
    SchemaValidator,
    UnknownSchemaError,
    load,
    names,
    validate,
    validator,
    version,
)
from schemas.vocabulary import (
    AgreementEventType,
    AgreementKind,
    Dataset,
    KeyStatus,
    LawfulBasis,
    Need,
    NeedLevel,
    NodeKind,
    PeerOutcome,
    ProcurementRoute,
    Purpose,
    Reach,
    Role,
    SettingType,
    Sex,
    SpecialCategoryCondition,
)

__all__ = [
    "BASE_URI",
    "AgreementEventType",
    "AgreementKind",
    "Dataset",
    "KeyStatus",
    "LawfulBasis",
    "Need",
    "NeedLevel",
    "NodeKind",
    "PeerOutcome",
    "ProcurementRoute",
    "Purpose",
    "Reach",
    "Role",
    "SchemaError",
    "SchemaValidator",
    "SettingType",
    "Sex",
    "SpecialCategoryCondition",
    "UnknownSchemaError",
    "load",
    "names",
    "validate",
    "validator",
    "version",
]
