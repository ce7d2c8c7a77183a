import pytest

from bloodcell.classes import CLASS_NAMES, class_index, normalize_class_name, normalize_class_names
from bloodcell.errors import UnknownClassError


def test_class_order_is_bloodmnist_order():
    assert CLASS_NAMES == (
        "basophil",
        "eosinophil",
        "erythroblast",
        "ig",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("basophil", "basophil"),
        ("Neutrophils", "neutrophil"),
        ("NEUTROPHIL", "neutrophil"),
        ("IG", "ig"),
        ("immature granulocytes", "ig"),
        ("Immature_Granulocyte", "ig"),
        ("immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "ig"),
        ("plt", "platelet"),
        ("Platelets", "platelet"),
        ("thrombocyte", "platelet"),
        ("NRBC", "erythroblast"),
        ("Erythroblasts", "erythroblast"),
        ("lymphocytes", "lymphocyte"),
        ("Monocyte ", "monocyte"),
        ("eosinophils", "eosinophil"),
        ("BNE", "neutrophil"),
    ],
)
def test_normalize_known_names(given, expected):
    assert normalize_class_name(given) == expected


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownClassError, match="neutrophil") as err:
        normalize_class_name("neutrophyl")
    assert "class_map" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_non_string_name_is_rejected():
    with pytest.raises(UnknownClassError, match="int"):
        normalize_class_name(3)  # type: ignore[arg-type]


def test_class_map_takes_precedence_and_class_index():
    assert normalize_class_names(["my lymphs", "BA"], class_map={"my lymphs": "lymphocyte"}) == [
        "lymphocyte",
        "basophil",
    ]
    assert class_index("Platelets") == 7
    assert class_index("IG") == 3


def test_custom_class_names():
    assert normalize_class_name("Cats", ("cat", "dog")) == "cat"
    with pytest.raises(UnknownClassError):
        normalize_class_name("basophil", ("cat", "dog"))
