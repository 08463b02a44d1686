"""values.schema.json: one block per kind of function ($defs), one key per
function of functions.yaml, and values.yaml's function blocks match them."""

import json

import chart_support as cs

SCHEMA = json.loads((cs.CHART / "values.schema.json").read_text())


def test_the_schemas_function_keys_are_the_manifests():
    functions = SCHEMA["properties"]["functions"]
    expected = {f["key"]: f"#/$defs/{f['access']}Function" for f in cs.MANIFEST}
    # every key it names is a function of the manifest, with the block of its access;
    # a function without a key of its own runs with newFunctionDefaults (no block, nothing to validate)
    schema_keys = {key: block["$ref"] for key, block in functions["properties"].items()}
    assert schema_keys == {key: ref for key, ref in expected.items() if key in schema_keys}
    assert "required" not in functions
    assert functions["additionalProperties"] is False
    defaults = SCHEMA["properties"]["newFunctionDefaults"]["properties"]
    assert {access: block["$ref"] for access, block in defaults.items()} == {
        "read": "#/$defs/readFunction", "write": "#/$defs/writeFunction"}


def test_values_yaml_blocks_belong_to_functions_of_the_manifest_and_the_schema():
    blocks = set(cs.chart_defaults()["functions"])
    assert blocks <= {f["key"] for f in cs.MANIFEST}
    assert blocks == set(SCHEMA["properties"]["functions"]["properties"])


def test_read_and_write_blocks_differ_only_in_the_database_settings():
    read, write = SCHEMA["$defs"]["readFunction"], SCHEMA["$defs"]["writeFunction"]
    assert set(read["properties"]) == set(write["properties"])
    differ = {key for key in read["properties"] if read["properties"][key] != write["properties"][key]}
    assert differ == {"database"}
    assert set(read["properties"]["database"]["properties"]) - set(write["properties"]["database"]["properties"]) == {
        "readFallback", "maxReplicaLagSeconds"}
    # the shared shapes are written once, as $defs
    for key in ("image", "traffic", "autoscaling", "resources", "extraEnv"):
        assert read["properties"][key] == {"$ref": f"#/$defs/function{key[0].upper()}{key[1:]}"}


def test_a_write_only_setting_is_refused_on_a_write_function():
    assert "/functions/createResult/database" in cs.render_error(sets=("functions.createResult.database.readFallback=true",))
