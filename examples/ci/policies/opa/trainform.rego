# The team's policies for trainform plans, for OPA / conftest: the same four rules as the
# checkov checks in ../trainform_checks.py, written against the same JSON (trainform's JSON
# plan is Terraform's JSON plan format: `trainform show -json plan.bin > plan.json`).
#
#   conftest test plan.json --policy policies/opa --namespace trainform.policies
#   opa eval --format pretty -i plan.json -d policies/opa 'data.trainform.policies.deny'
#
# The largest max_nodes a docker-cluster may have is data.trainform.max_nodes (8 unless given:
# `conftest test ... --data limits.json` or `opa eval ... -d limits.json` with
# {"trainform": {"max_nodes": 16}}).
#
# Written for OPA 1.x and conftest (Rego v1 syntax, `import rego.v1` for engines that default
# to v0). trainform's tests (tests/e2e/test_policy_rego.py) evaluate this file with regorus,
# Microsoft's Rego engine (PyPI's `opa-eval` wheel), on the same good and bad plans as the
# checkov checks. OPA's own binary and conftest do not install from the registries trainform's
# test machines reach: the two command lines above are documented, not run.
package trainform.policies

import rego.v1

# The largest max_nodes a docker-cluster may have. Read at its own key, never as
# object.get(data, ...): all of `data` holds this rule too, and OPA refuses such a rule
# (rego_recursion_error).
default max_nodes := 8

max_nodes := data.trainform.max_nodes

# Every resource the plan leaves in place, root module and child modules alike.
resources contains r if {
	walk(input.planned_values.root_module, [_, node])
	is_object(node)
	is_array(node.resources)
	some r in node.resources
	r.mode == "managed"
}

is_compute(r) if {
	startswith(r.type, "trainform_")
	endswith(r.type, "_compute")
}

has_owner(r) if {
	is_string(r.values.tags.owner)
	trim_space(r.values.tags.owner) != ""
}

deny contains msg if {
	some r in resources
	is_compute(r)
	not has_owner(r)
	msg := sprintf("%s: every compute carries an owner tag (tags.owner)", [r.address])
}

pins_host_key(r) if {
	is_string(r.values.host_key)
	startswith(r.values.host_key, "SHA256:")
	not r.values.trust_on_first_use == true
}

deny contains msg if {
	some r in resources
	r.type == "trainform_ssh_compute"
	not pins_host_key(r)
	msg := sprintf("%s: pin host_key = \"SHA256:...\" and do not set trust_on_first_use", [r.address])
}

has_max_duration(r) if {
	is_string(r.values.max_duration)
	r.values.max_duration != ""
}

deny contains msg if {
	some r in resources
	r.type == "trainform_run"
	not has_max_duration(r)
	msg := sprintf("%s: set max_duration (a time limit such as \"2h\")", [r.address])
}

within_limit(r) if {
	is_number(r.values.max_nodes)
	r.values.max_nodes <= max_nodes
}

deny contains msg if {
	some r in resources
	r.type == "trainform_docker_cluster_compute"
	not within_limit(r)
	# no space right after a verb: regorus's sprintf drops it ("%v (" gives "8(")
	msg := sprintf("%s: max_nodes must be at most data.trainform.max_nodes (%v)", [r.address, max_nodes])
}
