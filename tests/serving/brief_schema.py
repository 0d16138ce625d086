"""JSON schema of the brief's response example (section 4.2), with the four fields the issue adds and the
media type of the attention map.

Written from the brief's example by hand: every field of the example is required with the type its example
value has, and nothing else may appear.
"""

CLASS_NAMES = [
    "melanoma",
    "melanocytic_nevus",
    "basal_cell_carcinoma",
    "actinic_keratosis",
    "benign_keratosis",
    "dermatofibroma",
    "vascular_lesion",
]
_PROB = {"type": "number", "minimum": 0, "maximum": 1}

BRIEF_RESPONSE = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "diagnosis",
        "attention_map",
        "recommendation",
        "model_version",
        "latency_ms",
        "prediction_id",
        "risk_band",
        "melanoma_flag",
        "threshold",
        "attention_map_type",
    ],
    "properties": {
        "diagnosis": {
            "type": "object",
            "additionalProperties": False,
            "required": ["primary", "confidence", "melanoma_risk", "all_classes"],
            "properties": {
                "primary": {"enum": CLASS_NAMES},  # "melanocytic_nevus"
                "confidence": _PROB,  # 0.87
                "melanoma_risk": _PROB,  # 0.03
                "all_classes": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": CLASS_NAMES,
                    "properties": {c: _PROB for c in CLASS_NAMES},
                },
            },
        },
        "attention_map": {"type": "string", "contentEncoding": "base64", "minLength": 1},  # base64_encoded_heatmap
        "recommendation": {"type": "string", "minLength": 1},  # "Low risk. Routine follow-up."
        "model_version": {"type": "string", "minLength": 1},  # "v2.4.1"
        "latency_ms": {"type": "integer", "minimum": 0},  # 1840
        # added by the issue
        "prediction_id": {"type": "string", "minLength": 1},
        "risk_band": {"enum": ["low", "moderate", "high"]},
        "melanoma_flag": {"type": "boolean"},
        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
        # the encoding of attention_map (JPEG by default, PNG on request): a client builds data:<type>;base64,...
        "attention_map_type": {"enum": ["image/jpeg", "image/png"]},
    },
}
