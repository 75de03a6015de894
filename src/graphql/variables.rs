//! Whether a request's variables need async-graphql's check of their values.
//!
//! async-graphql validates every request in full, and for a returning user's login that is
//! about a sixth of wxunion's instructions (`BENCH_CG_WHAT=login bench/callgrind.sh`). Of its
//! rules only one reads the variables' values: `ArgumentsOfCorrectType`, which checks each
//! argument with its variables put in. The others depend on the document and the schema
//! alone, so a document that passed them once passes them again. For a kept document that
//! passed full validation with the same operation name, and variables that
//! [`taken_as_given`] accepts, the server executes on a schema that skips the rules
//! (`ValidationMode::Fast`, which still counts depth and complexity against the limits);
//! everything else is validated in full and gets the same errors as always.

use async_graphql::Positioned;
use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, VariableDefinition,
};
use serde_json::{Map, Value};

/// Whether every variable that the operation named `operation_name` declares is a built-in
/// scalar (`String`, `ID`, `Int`, `Float`, `Boolean`; no list) that gets a value of its own
/// kind, or is left out or null where its type allows that. Such values always pass
/// `ArgumentsOfCorrectType` once the document passed the other rules (which made each
/// variable's type fit the arguments it is used in). `false` when the operation is not found.
pub fn taken_as_given(
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    values: &Map<String, Value>,
) -> bool {
    let Some((_, operation)) = operation(doc, operation_name) else {
        return false;
    };
    operation
        .node
        .variable_definitions
        .iter()
        .all(|def| plain(def, values.get(def.node.name.node.as_str())))
}

/// The operation async-graphql runs for `operation_name`, and its name: with a name, the
/// document's operation of that name (an anonymous operation has none); without, the only
/// operation. `None` where async-graphql answers that no operation is singled out.
pub fn operation<'d>(
    doc: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<(Option<&'d str>, &'d Positioned<OperationDefinition>)> {
    match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), None) => Some((None, op)),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .get_key_value(name)
            .map(|(name, op)| (Some(name.as_str()), op)),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops
            .iter()
            .next()
            .map(|(name, op)| (Some(name.as_str()), op)),
        _ => None,
    }
}

fn plain(def: &Positioned<VariableDefinition>, value: Option<&Value>) -> bool {
    let def = &def.node;
    let ty = &def.var_type.node;
    let BaseType::Named(name) = &ty.base else {
        return false;
    };
    match value {
        None => ty.nullable || def.default_value.is_some(),
        Some(Value::Null) => ty.nullable,
        Some(value) => match (name.as_str(), value) {
            ("String" | "ID", Value::String(_)) => true,
            ("Int", Value::Number(n)) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            ("Float", Value::Number(_)) => true,
            ("Boolean", Value::Bool(_)) => true,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(text: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(text).unwrap()
    }

    #[test]
    fn only_built_in_scalars_given_values_of_their_kind_are_taken_as_given() {
        let login = "mutation L($a: String!, $c: String!) { loginWithCode(appId: $a, code: $c) { isNewUser } }";
        let cases: &[(&str, Option<&str>, Value, bool)] = &[
            (login, None, json!({"a": "wx1", "c": "code"}), true),
            (login, Some("L"), json!({"a": "wx1", "c": "code"}), true),
            // Extra variables are ignored, as GraphQL ignores them.
            (
                login,
                None,
                json!({"a": "wx1", "c": "code", "x": [1]}),
                true,
            ),
            (login, None, json!({"a": "wx1", "c": 1}), false),
            (login, None, json!({"a": "wx1", "c": null}), false),
            (login, None, json!({"a": "wx1"}), false),
            (login, None, json!({"a": "wx1", "c": {"x": 1}}), false),
            // Not an operation of the document.
            (login, Some("M"), json!({"a": "wx1", "c": "code"}), false),
            ("query($n: Int) { __typename }", None, json!({}), true),
            (
                "query($n: Int) { __typename }",
                None,
                json!({"n": null}),
                true,
            ),
            ("query($n: Int) { __typename }", None, json!({"n": 3}), true),
            (
                "query($n: Int) { __typename }",
                None,
                json!({"n": 3.5}),
                false,
            ),
            (
                "query($n: Int) { __typename }",
                None,
                json!({"n": 4_294_967_296_i64}),
                false,
            ),
            ("query($n: Int!) { __typename }", None, json!({}), false),
            ("query($n: Int! = 2) { __typename }", None, json!({}), true),
            (
                "query($n: Int! = 2) { __typename }",
                None,
                json!({"n": null}),
                false,
            ),
            (
                "query($f: Float!) { __typename }",
                None,
                json!({"f": 3}),
                true,
            ),
            (
                "query($b: Boolean!) { __typename }",
                None,
                json!({"b": "true"}),
                false,
            ),
            (
                "query($b: Boolean!) { __typename }",
                None,
                json!({"b": true}),
                true,
            ),
            (
                "query($i: ID!) { __typename }",
                None,
                json!({"i": "u1"}),
                true,
            ),
            (
                "query($i: ID!) { __typename }",
                None,
                json!({"i": 1}),
                false,
            ),
            (
                "query($s: [String!]) { __typename }",
                None,
                json!({"s": ["a"]}),
                false,
            ),
            (
                "query($k: AppKind) { __typename }",
                None,
                json!({"k": "MINI_PROGRAM"}),
                false,
            ),
            (
                "query($t: DateTime) { __typename }",
                None,
                json!({"t": "2026-01-01T00:00:00Z"}),
                false,
            ),
            // Two operations: the name picks one.
            (
                "query A($n: Int) { __typename } query B($s: String) { __typename }",
                Some("B"),
                json!({"s": "x"}),
                true,
            ),
            (
                "query A($n: Int) { __typename } query B($s: String) { __typename }",
                Some("A"),
                json!({"n": "x"}),
                false,
            ),
            (
                "query A { __typename } query B { __typename }",
                None,
                json!({}),
                false,
            ),
            ("{ __typename }", None, json!({}), true),
            ("{ __typename }", Some("A"), json!({}), false),
        ];
        for (text, name, values, want) in cases {
            let Value::Object(values) = values else {
                panic!("not an object")
            };
            assert_eq!(
                taken_as_given(&doc(text), *name, values),
                *want,
                "{text} {name:?} {values:?}"
            );
        }
    }
}
