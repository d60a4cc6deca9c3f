//! The operator commands: `status`, `segments`, `migrations`, `sessions` and `policy
//! push | rollback | shadow | diff | list`. Each talks to a running shardcast's admin API
//! and prints a table for people, or the API's JSON with `--json`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::Value;

use crate::admin::client::Client;

/// Print JSON as the API answered it.
fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Columns aligned to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |f| format!("{:.1}%", f * 100.0))
}

/// The elements of a JSON array (none when it is not one).
fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// `shardcast status`.
pub fn status(client: &Client, json: bool) -> Result<String> {
    let st = client.get("/v1/status")?;
    if json {
        return Ok(pretty(&st));
    }
    let topology = client.get("/v1/topology")?;
    let mut out = format!(
        "shardcast {} serving {} for {} s; table epoch {}, {} segments, {} migrating, {} sessions\n",
        s(&st["version"]),
        s(&st["listen"]),
        s(&st["uptime_s"]),
        s(&st["epoch"]),
        s(&st["segments"]),
        s(&st["migrations_running"]),
        s(&st["sessions"]),
    );
    if let Some(c) = st["cluster"].as_object() {
        out.push_str(&format!(
            "cluster proxy {} ({})\n",
            s(&c["name"]),
            if c["controller"] == true {
                "the controller"
            } else {
                "a follower"
            }
        ));
    }
    out.push_str(&format!(
        "policy {} (id {}); shadow {}{}\n\n",
        s(&st["policy"]),
        s(&st["policy_id"]),
        s(&st["shadow"]),
        match st["shadow_agreement"].as_f64() {
            Some(_) => format!(", agreeing {}", percent(&st["shadow_agreement"])),
            None => String::new(),
        }
    ));
    let rows: Vec<Vec<String>> = items(&topology["instances"])
        .map(|i| {
            vec![
                s(&i["name"]),
                s(&i["address"]),
                s(&i["state"]),
                s(&i["segments"]),
                s(&i["slots"]),
                s(&i["ops"]),
                s(&i["p99_us"]),
                format!("{:.2}", i["load"].as_f64().unwrap_or(0.0)),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "INSTANCE", "ADDRESS", "STATE", "SEGMENTS", "SLOTS", "OPS/S", "P99 µs", "LOAD",
        ],
        &rows,
    ));
    Ok(out)
}

/// `shardcast segments`.
pub fn segments(client: &Client, json: bool) -> Result<String> {
    let v = client.get("/v1/segments")?;
    if json {
        return Ok(pretty(&v));
    }
    let rows: Vec<Vec<String>> = items(&v["segments"])
        .map(|seg| {
            vec![
                s(&seg["id"]),
                format!("{}-{}", s(&seg["slot_start"]), s(&seg["slot_end"])),
                s(&seg["owner_name"]),
                s(&seg["ops"]),
                s(&seg["keys"]),
                if seg["migrating"] == true {
                    "migrating".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    Ok(format!(
        "epoch {}\n{}",
        s(&v["epoch"]),
        table(&["SEGMENT", "SLOTS", "OWNER", "OPS/S", "KEYS", ""], &rows)
    ))
}

fn names(client: &Client) -> Result<HashMap<u64, String>> {
    let topology = client.get("/v1/topology")?;
    Ok(items(&topology["instances"])
        .filter_map(|i| Some((i["id"].as_u64()?, s(&i["name"]))))
        .collect())
}

fn migration_rows(list: &Value, names: &HashMap<u64, String>) -> Vec<Vec<String>> {
    let name = |v: &Value| {
        v.as_u64()
            .and_then(|id| names.get(&id).cloned())
            .unwrap_or_else(|| s(v))
    };
    items(list)
        .map(|m| {
            vec![
                s(&m["id"]),
                s(&m["segment"]),
                format!("{} -> {}", name(&m["source"]), name(&m["target"])),
                s(&m["phase"]),
                s(&m["outcome"]),
                s(&m["keys_moved"]),
                s(&m["bytes_moved"]),
                s(&m["policy"]),
                s(&m["detail"]),
            ]
        })
        .collect()
}

/// `shardcast migrations [--watch] [--cancel ID]`.
pub fn migrations(client: &Client, json: bool, watch: bool, cancel: Option<u64>) -> Result<String> {
    if let Some(id) = cancel {
        let v = client.post(&format!("/v1/migrations/{id}/cancel"), None)?;
        return Ok(if json {
            pretty(&v)
        } else {
            format!("{}\n", s(&v["message"]))
        });
    }
    if watch {
        return watch_migrations(client, json);
    }
    let list = client.get("/v1/migrations")?;
    if json {
        return Ok(pretty(&list));
    }
    let names = names(client)?;
    Ok(table(
        &[
            "ID", "SEGMENT", "MOVE", "STEP", "OUTCOME", "KEYS", "BYTES", "POLICY", "DETAIL",
        ],
        &migration_rows(&list, &names),
    ))
}

/// Follow running migrations with a progress bar each (step, keys copied, rate) until none
/// runs; then print how each ended.
fn watch_migrations(client: &Client, json: bool) -> Result<String> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let names = names(client)?;
    let keys_of: HashMap<u64, u64> = items(&client.get("/v1/segments")?["segments"])
        .filter_map(|seg| Some((seg["id"].as_u64()?, seg["keys"].as_u64()?)))
        .collect();
    let multi = MultiProgress::new();
    let style =
        ProgressStyle::with_template("{prefix:>28} {bar:30} {pos}/{len} keys {per_sec} [{msg}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut bars: HashMap<u64, ProgressBar> = HashMap::new();
    let mut seen: Vec<u64> = Vec::new();
    loop {
        let list = client.get("/v1/migrations")?;
        let all = list.as_array().cloned().unwrap_or_default();
        let running: Vec<&Value> = all.iter().filter(|m| m["outcome"] == "running").collect();
        for m in &running {
            let Some(id) = m["id"].as_u64() else { continue };
            if !seen.contains(&id) {
                seen.push(id);
            }
            let bar = bars.entry(id).or_insert_with(|| {
                let total = m["segment"]
                    .as_u64()
                    .and_then(|seg| keys_of.get(&seg).copied())
                    .unwrap_or(0)
                    .max(1);
                let b = multi.add(ProgressBar::new(total));
                b.set_style(style.clone());
                let name = |v: &Value| {
                    v.as_u64()
                        .and_then(|i| names.get(&i).cloned())
                        .unwrap_or_default()
                };
                b.set_prefix(format!(
                    "segment {} {}->{}",
                    s(&m["segment"]),
                    name(&m["source"]),
                    name(&m["target"])
                ));
                b
            });
            let keys = m["keys_moved"].as_u64().unwrap_or(0);
            if keys > bar.length().unwrap_or(0) {
                bar.set_length(keys);
            }
            bar.set_position(keys);
            bar.set_message(s(&m["phase"]));
        }
        for (id, bar) in &bars {
            if !running.iter().any(|m| m["id"].as_u64() == Some(*id)) && !bar.is_finished() {
                let ended = all.iter().find(|m| m["id"].as_u64() == Some(*id));
                bar.finish_with_message(ended.map_or("ended".into(), |m| s(&m["outcome"])));
            }
        }
        if running.is_empty() {
            let ended: Vec<Value> = all
                .into_iter()
                .filter(|m| m["id"].as_u64().is_some_and(|id| seen.contains(&id)))
                .collect();
            if json {
                return Ok(pretty(&Value::Array(ended)));
            }
            if seen.is_empty() {
                return Ok("no migration is running\n".into());
            }
            return Ok(table(
                &[
                    "ID", "SEGMENT", "MOVE", "STEP", "OUTCOME", "KEYS", "BYTES", "POLICY", "DETAIL",
                ],
                &migration_rows(&Value::Array(ended), &names),
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `shardcast sessions`.
pub fn sessions(client: &Client, json: bool) -> Result<String> {
    let v = client.get("/v1/sessions")?;
    if json {
        return Ok(pretty(&v));
    }
    let rows: Vec<Vec<String>> = items(&v)
        .map(|x| {
            let partitions = x["partitions"]
                .as_object()
                .map(|p| p.keys().cloned().collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            vec![
                s(&x["id"]),
                s(&x["name"]),
                s(&x["addr"]),
                s(&x["user"]),
                s(&x["db"]),
                s(&x["protocol"]),
                s(&x["subscriptions"]),
                partitions,
            ]
        })
        .collect();
    Ok(table(
        &[
            "ID",
            "NAME",
            "ADDR",
            "USER",
            "DB",
            "RESP",
            "SUBS",
            "PARTITIONS",
        ],
        &rows,
    ))
}

/// Upload a component with its settings; the version as the API lists it.
pub fn upload(client: &Client, file: &PathBuf, settings: Option<&PathBuf>) -> Result<Value> {
    let component = std::fs::read(file)
        .with_context(|| format!("cannot read policy file {}", file.display()))?;
    let settings = match settings {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read settings file {}", p.display()))?,
        None => String::new(),
    };
    let body = serde_json::json!({
        "component_base64": base64::engine::general_purpose::STANDARD.encode(&component),
        "settings": settings,
    });
    client.post(
        "/v1/policies",
        Some(("application/json", serde_json::to_vec(&body)?)),
    )
}

/// `shardcast policy push <file.wasm>`: upload, then activate.
pub fn push(
    client: &Client,
    file: &PathBuf,
    settings: Option<&PathBuf>,
    force: bool,
    json: bool,
) -> Result<String> {
    let version = upload(client, file, settings)?;
    let id = s(&version["id"]);
    let path = format!(
        "/v1/policies/{id}/activate{}",
        if force { "?force=true" } else { "" }
    );
    let list = client.post(&path, None)?;
    if json {
        return Ok(pretty(&list));
    }
    let active = &list["active"];
    Ok(if active["id"] == version["id"] {
        format!(
            "{} (id {id}) is active; {} is kept for rollback\n",
            s(&version["label"]),
            s(&list["previous"]["label"])
        )
    } else {
        format!(
            "{} (id {id}) is uploaded and swaps in at the next tick (still {} now)\n",
            s(&version["label"]),
            s(&active["label"])
        )
    })
}

/// `shardcast policy rollback`.
pub fn rollback(client: &Client, json: bool) -> Result<String> {
    let list = client.post("/v1/policies/rollback", None)?;
    if json {
        return Ok(pretty(&list));
    }
    Ok(format!(
        "rolled back: {} (id {}) is active\n",
        s(&list["active"]["label"]),
        s(&list["active"]["id"])
    ))
}

/// `shardcast policy shadow <file.wasm>` or `--stop`.
pub fn shadow(
    client: &Client,
    file: Option<&PathBuf>,
    settings: Option<&PathBuf>,
    stop: bool,
    json: bool,
) -> Result<String> {
    if stop {
        let v = client.delete("/v1/shadow")?;
        return Ok(if json {
            pretty(&v)
        } else {
            format!("{}\n", s(&v["message"]))
        });
    }
    let Some(file) = file else {
        bail!("give the candidate's component (`shardcast policy shadow <file.wasm>`), or --stop");
    };
    let version = upload(client, file, settings)?;
    let id = s(&version["id"]);
    let v = client.post(&format!("/v1/policies/{id}/shadow"), None)?;
    Ok(if json {
        pretty(&v)
    } else {
        format!(
            "{} (id {id}) runs in shadow from the next tick; `shardcast policy diff` shows how it compares, `shardcast policy push {}` activates it\n",
            s(&version["label"]),
            file.display()
        )
    })
}

/// `shardcast policy list`.
pub fn list(client: &Client, json: bool) -> Result<String> {
    let v = client.get("/v1/policies")?;
    if json {
        return Ok(pretty(&v));
    }
    let mut versions = vec![v["active"].clone(), v["previous"].clone()];
    versions.extend(v["candidates"].as_array().cloned().unwrap_or_default());
    let rows: Vec<Vec<String>> = versions
        .iter()
        .filter(|x| !x.is_null())
        .map(|x| {
            let faults: u64 = x["stats"]["faults"]
                .as_object()
                .map(|f| f.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0);
            vec![
                s(&x["role"]),
                s(&x["label"]),
                s(&x["id"]),
                s(&x["world"]),
                s(&x["stats"]["calls"]),
                s(&x["stats"]["call_p99_us"]),
                faults.to_string(),
                s(&x["stats"]["rejections"]),
            ]
        })
        .collect();
    Ok(table(
        &[
            "ROLE",
            "VERSION",
            "ID",
            "WORLD",
            "CALLS",
            "P99 µs",
            "FAULTS",
            "REJECTIONS",
        ],
        &rows,
    ))
}

/// `shardcast policy diff [A] [B]`: two versions side by side (by default the active one
/// and the shadow candidate, else the previous one), with the shadow's agreement.
pub fn diff(client: &Client, a: Option<String>, b: Option<String>, json: bool) -> Result<String> {
    let list = client.get("/v1/policies")?;
    let candidates = list["candidates"].as_array().cloned().unwrap_or_default();
    let find = |id: &str| client.get(&format!("/v1/policies/{id}"));
    let left = match a {
        Some(id) => find(&id)?,
        None => list["active"].clone(),
    };
    let right = match b {
        Some(id) => find(&id)?,
        None => candidates
            .iter()
            .find(|c| c["role"] == "shadow")
            .cloned()
            .unwrap_or_else(|| list["previous"].clone()),
    };
    if left.is_null() || right.is_null() {
        bail!(
            "there are not two versions to compare: name them (`shardcast policy diff <id> <id>`; ids from `shardcast policy list`)"
        );
    }
    let shadow = &list["shadow"];
    let compared = shadow["id"] == right["id"] || shadow["id"] == left["id"];
    if json {
        return Ok(pretty(&serde_json::json!({
            "a": left, "b": right, "shadow": if compared { shadow.clone() } else { Value::Null },
        })));
    }
    let row = |name: &str, f: &dyn Fn(&Value) -> String| vec![name.to_owned(), f(&left), f(&right)];
    let faults = |x: &Value| {
        x["stats"]["faults"]
            .as_object()
            .map(|f| {
                f.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "0".into())
    };
    let mut out = table(
        &["", "A", "B"],
        &[
            row("version", &|x| s(&x["label"])),
            row("role", &|x| s(&x["role"])),
            row("id", &|x| s(&x["id"])),
            row("world", &|x| s(&x["world"])),
            row("calls", &|x| s(&x["stats"]["calls"])),
            row("call p50 µs", &|x| s(&x["stats"]["call_p50_us"])),
            row("call p99 µs", &|x| s(&x["stats"]["call_p99_us"])),
            row("faults", &faults),
            row("rejections", &|x| s(&x["stats"]["rejections"])),
        ],
    );
    if compared {
        out.push_str(&format!(
            "\nshadow: agrees on {} of {} ticks; on {} of the {} ticks where either acted; {} faulted ticks\n",
            percent(&shadow["agreement"]),
            s(&shadow["ticks"]),
            percent(&shadow["acting_agreement"]),
            s(&shadow["acting_ticks"]),
            s(&shadow["faulted_ticks"]),
        ));
        if let Some(last) = shadow["last_disagreement"].as_str() {
            out.push_str(&format!("latest disagreement: {last}\n"));
        }
    }
    let (sa, sb) = (s(&left["settings"]), s(&right["settings"]));
    if sa != sb {
        out.push_str("\nsettings differ:\n");
        for l in sa.lines().filter(|l| !sb.lines().any(|m| m == *l)) {
            out.push_str(&format!("  A: {l}\n"));
        }
        for l in sb.lines().filter(|l| !sa.lines().any(|m| m == *l)) {
            out.push_str(&format!("  B: {l}\n"));
        }
    }
    Ok(out)
}
