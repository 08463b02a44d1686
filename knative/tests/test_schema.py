"""values.schema.json: one block per kind of function ($defs), one key per
function of functions.yaml, and values.yaml's function blocks match them."""

import json

import chart_support as cs

SCHEMA = json.loads((cs.CHART / "values.schema.json").read_text())


def test_the_schemas_function_keys_are_the_manifests():
    functions = SCHEMA["properties"]["functions"]
    expected = {f["key"]: f"#/$defs/{f['access']}Function" for f in cs.MANIFEST}
    assert {key: block["$ref"] for key, block in functions["properties"].items()} == expected
    assert sorted(functions["required"]) == sorted(expected)
    assert functions["additionalProperties"] is False


def test_values_yaml_has_one_block_per_function_of_the_manifest():
    assert sorted(cs.chart_defaults()["functions"]) == sorted(f["key"] for f in cs.MANIFEST)


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
