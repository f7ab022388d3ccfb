//! The deployment templates, checked offline with the pinned tools of
//! `scripts/install-test-tools`: cfn-lint on every template, `sam validate
//! --lint`, and the SAM template translated by aws-sam-translator (the
//! linters do not look inside SAM resources) and linted again. Then what
//! users rely on: the event source mapping's settings, least-privilege IAM,
//! and that every setting the templates hand the binary is one it knows.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use clap::CommandFactory;
use common::project_dir;
use serde_json::Value;

/// The venv's bin folder (cfn-lint, sam, python).
fn tools() -> PathBuf {
    let python = std::env::var("SHARDWISE_PYTHON").unwrap_or_else(|_| {
        panic!("SHARDWISE_PYTHON is not set: run scripts/test, or `eval \"$(scripts/install-test-tools)\"`")
    });
    PathBuf::from(python)
        .parent()
        .expect("bin folder")
        .to_path_buf()
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(tools().join(program))
        .args(args)
        .current_dir(project_dir())
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn assert_ok(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The SAM template translated to plain CloudFormation.
fn translated() -> Value {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let path = out.path().to_string_lossy().to_string();
    assert_ok(
        &run(
            "python",
            &["infra/translate_sam.py", "template.yaml", &path],
        ),
        "translation",
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("json")).expect("valid json")
}

/// A CloudFormation YAML template as JSON (short intrinsic forms become
/// `{"Ref": …}` / `{"Fn::…": …}`), through cfn-lint's own reader.
fn decoded(template: &str) -> Value {
    let script = "import json,sys\nfrom cfnlint.decode import decode\nt, m = decode(sys.argv[1])\nassert not m, m\nprint(json.dumps(t))";
    let output = run("python", &["-c", script, template]);
    assert_ok(&output, "decoding");
    serde_json::from_slice(&output.stdout).expect("json")
}

#[test]
fn cfn_lint_passes_on_every_template() {
    assert_ok(
        &run("cfn-lint", &["template.yaml", "infra/ecs-service.yaml"]),
        "cfn-lint",
    );
}

#[test]
fn sam_validate_lint_passes() {
    assert_ok(
        &run(
            "sam",
            &[
                "validate",
                "--lint",
                "--template",
                "template.yaml",
                "--region",
                "us-east-1",
            ],
        ),
        "sam validate --lint",
    );
}

#[test]
fn the_translated_template_lints_and_keeps_the_event_source_settings() {
    let template = translated();
    let file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), template.to_string()).expect("write");
    assert_ok(
        &run("cfn-lint", &[&file.path().to_string_lossy()]),
        "cfn-lint on the translation",
    );

    let resources = template["Resources"].as_object().expect("resources");
    let mappings: Vec<&Value> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
        .collect();
    assert_eq!(mappings.len(), 1);
    let esm = &mappings[0]["Properties"];
    assert_eq!(
        esm["FunctionResponseTypes"],
        serde_json::json!(["ReportBatchItemFailures"])
    );
    assert_eq!(esm["BisectBatchOnFunctionError"], true);
    assert_eq!(
        esm["ParallelizationFactor"], 1,
        "exactly-once needs per-shard order"
    );
    assert_eq!(
        esm["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0],
        "FailureQueue"
    );
    assert_eq!(esm["EventSourceArn"]["Fn::GetAtt"][0], "Stream");
    let parameters = &template["Parameters"];
    for (property, parameter, bound) in [
        ("MaximumRetryAttempts", "MaximumRetryAttempts", 10_000),
        (
            "MaximumRecordAgeInSeconds",
            "MaximumRecordAgeSeconds",
            604_800,
        ),
        ("BatchSize", "BatchSize", 10_000),
        (
            "MaximumBatchingWindowInSeconds",
            "BatchingWindowSeconds",
            300,
        ),
    ] {
        assert_eq!(esm[property]["Ref"], parameter, "{property} is a parameter");
        let p = &parameters[parameter];
        assert!(
            p["MinValue"].as_i64().is_some_and(|m| m >= 0),
            "{parameter}: bounded below (never -1)"
        );
        assert!(
            p["MaxValue"].as_i64().is_some_and(|m| m <= bound),
            "{parameter}: bounded above"
        );
    }

    let function = &resources["CounterFunction"]["Properties"];
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(
        function["Environment"]["Variables"]["SHARDWISE_COUNTS_TABLE"]["Ref"],
        "CountsTable"
    );
}

/// Actions that have no resource type, for which IAM requires `*`.
const NO_RESOURCE_TYPE: &[&str] = &["kinesis:ListStreams", "ecr:GetAuthorizationToken"];

fn statements(template: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for (name, resource) in template["Resources"].as_object().expect("resources") {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        assert!(
            resource["Properties"]["ManagedPolicyArns"].is_null(),
            "{name}: no managed policies"
        );
        for policy in resource["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for statement in policy["PolicyDocument"]["Statement"]
                .as_array()
                .into_iter()
                .flatten()
            {
                found.push((name.clone(), statement.clone()));
            }
        }
    }
    found
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

#[test]
fn every_iam_statement_names_its_own_resources_and_actions() {
    for template in [translated(), decoded("infra/ecs-service.yaml")] {
        let statements = statements(&template);
        assert!(!statements.is_empty());
        for (role, statement) in statements {
            if statement["Principal"].is_object() {
                continue; // the trust policy
            }
            let actions: Vec<String> = as_list(&statement["Action"])
                .iter()
                .map(|a| a.as_str().expect("action").to_string())
                .collect();
            for action in &actions {
                assert!(!action.contains('*'), "{role}: wildcard action {action}");
            }
            for resource in as_list(&statement["Resource"]) {
                if resource == "*" {
                    assert!(
                        actions
                            .iter()
                            .all(|a| NO_RESOURCE_TYPE.contains(&a.as_str())),
                        "{role}: \"*\" resource for {actions:?}"
                    );
                }
            }
        }
    }
}

/// Every `SHARDWISE_…` variable the binary reads, from its CLI definition.
fn known_settings() -> BTreeSet<String> {
    fn walk(command: &clap::Command, names: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                names.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, names);
        }
    }
    let mut names = BTreeSet::new();
    walk(&shardwise::cli::Cli::command(), &mut names);
    names
}

#[test]
fn the_templates_hand_the_binary_only_settings_it_knows() {
    let known = known_settings();
    assert!(
        known.contains("SHARDWISE_COUNTS_TABLE") && known.contains("SHARDWISE_APPLICATION_NAME")
    );
    let lambda = translated();
    let lambda_env: Vec<String> =
        lambda["Resources"]["CounterFunction"]["Properties"]["Environment"]["Variables"]
            .as_object()
            .expect("variables")
            .keys()
            .cloned()
            .collect();
    let ecs = decoded("infra/ecs-service.yaml");
    let ecs_env: Vec<String> =
        ecs["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
            .as_array()
            .expect("environment")
            .iter()
            .map(|e| e["Name"].as_str().expect("name").to_string())
            .collect();
    for name in lambda_env.iter().chain(ecs_env.iter()) {
        assert!(
            known.contains(name),
            "{name} is not a setting of the binary (known: {known:?})"
        );
    }
    for required in [
        "SHARDWISE_APPLICATION_NAME",
        "SHARDWISE_STREAM",
        "SHARDWISE_COUNTS_TABLE",
    ] {
        assert!(
            ecs_env.iter().any(|n| n == required),
            "the worker task sets {required}"
        );
    }
    // The task's stop timeout outlasts the worker's drain.
    let container = &ecs["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    assert!(container["StopTimeout"].as_i64().is_some_and(|t| t > 20));
}
