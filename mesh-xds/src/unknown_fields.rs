//! Fields of an `istio.security.Authorization` that this build does not
//! declare, found in the encoded bytes (prost drops them on decode).
//!
//! A condition the agent cannot read must not silently vanish: a match that
//! lost a field would hold for more connections than the policy's author
//! meant. So each unknown field of a `Match` (and of the `Clause` or `Rule`
//! around it, or of the `Authorization` itself) is recorded in the decoded
//! message as an entry of the `extensions` at that level, named
//! [`UNKNOWN_FIELD_PREFIX`]`<field number>`; the evaluator treats any
//! extension it does not know as a condition it cannot evaluate (fail
//! closed).
use crate::proto::{
    istio_security::{Authorization, Clause, Match},
    istio_workload::Extension,
};

/// Name prefix of the extension entries that stand for unknown fields.
pub const UNKNOWN_FIELD_PREFIX: &str = "mesh.unknown-field/";

/// Field numbers `istio.security.Authorization` declares here.
const AUTHORIZATION_FIELDS: std::ops::RangeInclusive<u32> = 1..=7;
const RULE_CLAUSES: u32 = 1;
const AUTHORIZATION_RULES: u32 = 5;
const CLAUSE_MATCHES: u32 = 2;
/// Field numbers `istio.security.Match` declares here.
const MATCH_FIELDS: std::ops::RangeInclusive<u32> = 1..=13;

/// One field as found on the wire: its number and, for length-delimited
/// fields, the payload.
struct Field<'a> {
    number: u32,
    payload: Option<&'a [u8]>,
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The top-level fields of one encoded message; `None` when the bytes are
/// not a well-formed message (prost has rejected those already).
fn fields(buf: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3).ok()?;
        let payload = match key & 7 {
            0 => {
                varint(buf, &mut pos)?;
                None
            }
            1 => {
                pos = pos.checked_add(8).filter(|p| *p <= buf.len())?;
                None
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
                let payload = &buf[pos..end];
                pos = end;
                Some(payload)
            }
            5 => {
                pos = pos.checked_add(4).filter(|p| *p <= buf.len())?;
                None
            }
            // Groups (3, 4) are not used by proto3 messages.
            _ => return None,
        };
        out.push(Field { number, payload });
    }
    Some(out)
}

fn marker(number: u32) -> Extension {
    Extension {
        name: format!("{UNKNOWN_FIELD_PREFIX}{number}"),
        config: None,
    }
}

/// The unknown field numbers among `fields`, each once, in order.
fn unknown(fields: &[Field<'_>], known: impl Fn(u32) -> bool) -> Vec<u32> {
    let mut out: Vec<u32> = fields
        .iter()
        .map(|f| f.number)
        .filter(|n| !known(*n))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The occurrences of repeated message field `number`, in wire order
/// (prost's order of the decoded elements).
fn occurrences<'a, 'f>(
    fields: &'f [Field<'a>],
    number: u32,
) -> impl Iterator<Item = &'a [u8]> + 'f {
    fields
        .iter()
        .filter(move |f| f.number == number)
        .filter_map(|f| f.payload)
}

/// Marks every match of `clause` with `numbers` (a clause without matches
/// gets one holding only the markers).
fn mark_clause(clause: &mut Clause, numbers: &[u32]) {
    if numbers.is_empty() {
        return;
    }
    if clause.matches.is_empty() {
        clause.matches.push(Match::default());
    }
    for m in &mut clause.matches {
        m.extensions.extend(numbers.iter().map(|n| marker(*n)));
    }
}

/// Records in `decoded` (decoded from `encoded`) every field of the policy,
/// its rules, clauses and matches that this build does not declare, and
/// returns how many it found. Bytes that do not parse change nothing.
pub fn mark_unknown_authorization_fields(encoded: &[u8], decoded: &mut Authorization) -> usize {
    let Some(top) = fields(encoded) else {
        return 0;
    };
    let mut found = 0;
    let top_unknown = unknown(&top, |n| AUTHORIZATION_FIELDS.contains(&n));
    found += top_unknown.len();
    decoded
        .extensions
        .extend(top_unknown.iter().map(|n| marker(*n)));
    for (rule_bytes, rule) in occurrences(&top, AUTHORIZATION_RULES).zip(decoded.rules.iter_mut()) {
        let Some(rule_fields) = fields(rule_bytes) else {
            continue;
        };
        let rule_unknown = unknown(&rule_fields, |n| n == RULE_CLAUSES);
        found += rule_unknown.len();
        if !rule_unknown.is_empty() && rule.clauses.is_empty() {
            rule.clauses.push(Clause::default());
        }
        let clause_bytes: Vec<&[u8]> = occurrences(&rule_fields, RULE_CLAUSES).collect();
        for (ci, clause) in rule.clauses.iter_mut().enumerate() {
            let clause_fields = clause_bytes
                .get(ci)
                .and_then(|b| fields(b))
                .unwrap_or_default();
            let clause_unknown = unknown(&clause_fields, |n| n == CLAUSE_MATCHES);
            found += clause_unknown.len();
            for (match_bytes, m) in
                occurrences(&clause_fields, CLAUSE_MATCHES).zip(clause.matches.iter_mut())
            {
                let match_unknown = fields(match_bytes)
                    .map(|f| unknown(&f, |n| MATCH_FIELDS.contains(&n)))
                    .unwrap_or_default();
                found += match_unknown.len();
                m.extensions
                    .extend(match_unknown.iter().map(|n| marker(*n)));
            }
            let mut around: Vec<u32> = rule_unknown.clone();
            around.extend(&clause_unknown);
            mark_clause(clause, &around);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::istio_security::{Rule, StringMatch};

    /// Appends field `number` as a varint `value` (an unknown scalar).
    fn with_varint(mut bytes: Vec<u8>, number: u32, value: u8) -> Vec<u8> {
        bytes.push(u8::try_from(number << 3).unwrap());
        bytes.push(value);
        bytes
    }

    fn one_match(m: Match) -> Authorization {
        Authorization {
            name: "p".into(),
            rules: vec![Rule {
                clauses: vec![Clause { matches: vec![m] }],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn an_unknown_match_field_becomes_a_marker_on_that_match() {
        let m = Match {
            principals: vec![StringMatch::default()],
            ..Default::default()
        };
        let match_bytes = with_varint(m.encode_to_vec(), 14, 1);
        // Clause { matches (2): match_bytes }, Rule { clauses (1): clause }.
        let mut clause_bytes = Vec::new();
        clause_bytes.push(2 << 3 | 2);
        clause_bytes.push(u8::try_from(match_bytes.len()).unwrap());
        clause_bytes.extend(&match_bytes);
        let mut rule_bytes = vec![1 << 3 | 2, u8::try_from(clause_bytes.len()).unwrap()];
        rule_bytes.extend(&clause_bytes);
        let mut policy_bytes = Authorization {
            name: "p".into(),
            ..Default::default()
        }
        .encode_to_vec();
        policy_bytes.push(5 << 3 | 2);
        policy_bytes.push(u8::try_from(rule_bytes.len()).unwrap());
        policy_bytes.extend(&rule_bytes);

        let mut decoded = Authorization::decode(policy_bytes.as_slice()).unwrap();
        assert!(decoded.rules[0].clauses[0].matches[0].extensions.is_empty());
        assert_eq!(
            mark_unknown_authorization_fields(&policy_bytes, &mut decoded),
            1
        );
        let names: Vec<&str> = decoded.rules[0].clauses[0].matches[0]
            .extensions
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["mesh.unknown-field/14"]);
        assert!(decoded.extensions.is_empty());
    }

    #[test]
    fn known_fields_leave_the_policy_unchanged() {
        let policy = one_match(Match {
            destination_ports: vec![80],
            service_accounts: vec![Default::default()],
            ..Default::default()
        });
        let bytes = policy.encode_to_vec();
        let mut decoded = Authorization::decode(bytes.as_slice()).unwrap();
        assert_eq!(mark_unknown_authorization_fields(&bytes, &mut decoded), 0);
        assert_eq!(decoded, policy);
    }

    #[test]
    fn unknown_policy_and_clause_fields_are_marked_at_their_level() {
        let policy = one_match(Match::default());
        let bytes = with_varint(policy.encode_to_vec(), 9, 1);
        let mut decoded = Authorization::decode(bytes.as_slice()).unwrap();
        assert_eq!(mark_unknown_authorization_fields(&bytes, &mut decoded), 1);
        assert_eq!(decoded.extensions[0].name, "mesh.unknown-field/9");

        // Clause field 1 (upstream's commented-out match behaviour).
        let clause = with_varint(Vec::new(), 1, 1);
        let mut rule_bytes = vec![1 << 3 | 2, u8::try_from(clause.len()).unwrap()];
        rule_bytes.extend(&clause);
        let mut bytes = vec![5 << 3 | 2, u8::try_from(rule_bytes.len()).unwrap()];
        bytes.extend(&rule_bytes);
        let mut decoded = Authorization::decode(bytes.as_slice()).unwrap();
        assert_eq!(mark_unknown_authorization_fields(&bytes, &mut decoded), 1);
        let clause = &decoded.rules[0].clauses[0];
        assert_eq!(clause.matches.len(), 1, "a marker match is added");
        assert_eq!(clause.matches[0].extensions[0].name, "mesh.unknown-field/1");
    }
}
