//! Datasets: CSV files streamed to S3 (one PutObject, or a multipart upload above the threshold),
//! refused uploads that leave nothing behind, local files from the data directory, paged
//! listing, get, delete and export, and bad input named by field.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use support::{Emulator, FormPart, Scratch, Service, ServiceConfig, unique};

const MIB: usize = 1024 * 1024;
const UPLOAD: &str = "/api/service/v1/datasets";
const ESSEDUM: &str = "adapter_instance=aws-1&project=churn&isCached=false&isInstance=true";

/// A CSV file of at least `size` bytes.
fn csv(size: usize) -> Vec<u8> {
    let mut out = b"id,value,label\n".to_vec();
    let mut i = 0u64;
    while out.len() < size {
        out.extend_from_slice(format!("{i},{},{}\n", i * 7 % 1000, i % 2).as_bytes());
        i += 1;
    }
    out
}

/// The dataset id of `bucket/key` (unpadded URL-safe base64), as the service makes it.
fn id_of(bucket: &str, key: &str) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let data = format!("{bucket}/{key}").into_bytes();
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A service with extra settings (environment variables).
fn service(s: &Scratch, env: &[(&str, String)]) -> Service {
    let mut config: ServiceConfig = s.config(Emulator::shared().url());
    config.extra_env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Service::start(config)
}

async fn bucket(prefix: &str) -> String {
    let b = unique(prefix);
    Emulator::shared().create_bucket(&b).await;
    b
}

/// Nothing of a refused upload remains: no object, no open multipart upload.
async fn nothing_left(bucket: &str) {
    let emu = Emulator::shared();
    assert_eq!(emu.list_keys(bucket, "").await, Vec::<String>::new());
    assert_eq!(
        emu.open_multipart_uploads(bucket).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_small_csv_is_uploaded_as_sent_and_can_be_read_back() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = service(&s, &[]);
    let b = bucket("ds-small").await;
    let data = csv(2000);

    let (code, rec, _) = svc
        .post_form(
            &format!("{UPLOAD}?{ESSEDUM}"),
            &[
                FormPart::Text("Bucket", &b),
                FormPart::File("file", Some("iris.csv"), &data),
            ],
        )
        .await;
    assert_eq!(code, 201, "{rec}");
    assert_eq!(rec["status"], "Uploaded");
    assert_eq!(rec["type"], "s3-dataset");
    assert_eq!(rec["name"], "datasets/iris.csv");
    assert_eq!(rec["container"], b.as_str());
    assert_eq!(rec["artifacts"], format!("s3://{b}/datasets/iris.csv"));
    assert_eq!(rec["id"], id_of(&b, "datasets/iris.csv"));
    // As the Python service's records: sourceID is the S3 key (also accepted as an id).
    assert_eq!(rec["sourceID"], "datasets/iris.csv");
    assert_eq!(
        (rec["adapter"].as_str(), rec["project"].as_str()),
        (Some("aws-1"), Some("churn"))
    );
    for field in ["createdOn", "syncDate", "sourceOrg", "sourcename"] {
        assert!(rec[field].is_string(), "{field}: {rec}");
    }
    let raw: Value = serde_json::from_str(rec["rawPayload"].as_str().unwrap()).unwrap();
    assert_eq!(raw["Key"], "datasets/iris.csv");
    assert_eq!(raw["Size"], data.len());
    assert_eq!(raw["ContentType"], "text/csv");
    assert_eq!(
        emu.get_object_bytes(&b, "datasets/iris.csv").await.unwrap(),
        data
    );

    // `name` chooses the file name, `Key` the whole key.
    let (code, rec, _) = svc
        .post_form(
            UPLOAD,
            &[
                FormPart::Text("Bucket", &b),
                FormPart::Text("name", "train.csv"),
                FormPart::File("file", Some("C:\\tmp\\local.csv"), &data),
            ],
        )
        .await;
    assert_eq!(
        (code, rec["name"].as_str()),
        (201, Some("datasets/train.csv")),
        "{rec}"
    );
    let (code, rec, _) = svc
        .post_form(
            UPLOAD,
            &[
                FormPart::Text("Bucket", &b),
                FormPart::Text("Key", "teams/a b/ü+1.csv"),
                FormPart::File("file", None, &data),
            ],
        )
        .await;
    assert_eq!(
        (code, rec["name"].as_str()),
        (201, Some("teams/a b/ü+1.csv")),
        "{rec}"
    );

    let id = rec["id"].as_str().unwrap();
    let (code, got) = svc
        .get(&format!("/api/service/v1/datasets/{id}?{ESSEDUM}"))
        .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(
        (got["status"].as_str(), got["name"].as_str()),
        (Some("Available"), Some("teams/a b/ü+1.csv"))
    );
    assert_eq!(
        emu.get_object_bytes(&b, "teams/a%20b/%C3%BC%2B1.csv")
            .await
            .unwrap(),
        data
    );
}

#[tokio::test]
async fn a_file_above_the_threshold_goes_up_in_parts_and_completes() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = service(
        &s,
        &[("EXECUTOR_MULTIPART_THRESHOLD_BYTES", (5 * MIB).to_string())],
    );
    let b = bucket("ds-large").await;
    let data = csv(13 * MIB);

    let (code, rec, _) = svc
        .post_form(
            UPLOAD,
            &[
                FormPart::Text("Bucket", &b),
                FormPart::File("file", Some("big.csv"), &data),
            ],
        )
        .await;
    assert_eq!(code, 201, "{rec}");
    let stored = emu.get_object_bytes(&b, "datasets/big.csv").await.unwrap();
    assert_eq!(stored.len(), data.len());
    assert!(stored == data, "the stored object differs from the upload");
    assert_eq!(emu.open_multipart_uploads(&b).await, Vec::<String>::new());
    // 13 MiB in parts of 8 MiB.
    let parts = svc
        .metric("executor_aws_calls_total{operation=\"UploadPart\",outcome=\"ok\"}")
        .await;
    assert_eq!(parts, 2);
    assert_eq!(
        svc.metric(
            "executor_aws_calls_total{operation=\"CompleteMultipartUpload\",outcome=\"ok\"}"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_refusal_in_the_middle_of_a_multipart_upload_aborts_it() {
    let s = Scratch::new();
    let svc = service(
        &s,
        &[("EXECUTOR_MULTIPART_THRESHOLD_BYTES", (5 * MIB).to_string())],
    );
    let b = bucket("ds-abort").await;
    // Valid CSV for 10 MiB (one part is sent), then a NUL byte.
    let mut data = csv(10 * MIB);
    data.extend_from_slice(b"1,\x00,2\n");
    data.extend_from_slice(&csv(MIB));

    let (code, err, _) = svc
        .post_form(
            UPLOAD,
            &[
                FormPart::Text("Bucket", &b),
                FormPart::File("file", Some("bad.csv"), &data),
            ],
        )
        .await;
    assert_eq!(code, 422, "{err}");
    assert_eq!(err["field"], "file");
    assert!(err["error"].as_str().unwrap().contains("NUL"), "{err}");
    nothing_left(&b).await;
    assert_eq!(
        svc.metric("executor_aws_calls_total{operation=\"AbortMultipartUpload\",outcome=\"ok\"}")
            .await,
        1
    );
}

#[tokio::test]
async fn an_upload_above_the_dataset_limit_is_refused_and_leaves_nothing() {
    let s = Scratch::new();
    let svc = service(&s, &[("EXECUTOR_MAX_DATASET_BYTES", MIB.to_string())]);
    let b = bucket("ds-limit").await;

    let (code, err, _) = svc
        .post_form(
            UPLOAD,
            &[
                FormPart::Text("Bucket", &b),
                FormPart::File("file", Some("big.csv"), &csv(2 * MIB)),
            ],
        )
        .await;
    assert_eq!(code, 413, "{err}");
    assert!(err["error"].is_string(), "{err}");
    nothing_left(&b).await;

    // A local file above the limit too.
    std::fs::write(s.data_dir().join("big.csv"), csv(2 * MIB)).unwrap();
    let (code, err) = svc
        .post(
            UPLOAD,
            &json!({"Bucket": b, "local_dataset_path": "big.csv"}),
        )
        .await;
    assert_eq!(code, 413, "{err}");
    nothing_left(&b).await;

    // Below the limit it goes through.
    let (code, rec, _) = svc
        .post_form(
            UPLOAD,
            &[
                FormPart::Text("Bucket", &b),
                FormPart::File("file", Some("ok.csv"), &csv(MIB / 2)),
            ],
        )
        .await;
    assert_eq!(code, 201, "{rec}");
}

#[tokio::test]
async fn files_that_are_not_csv_are_refused_and_leave_nothing() {
    let s = Scratch::new();
    let svc = service(&s, &[]);
    let b = bucket("ds-notcsv").await;
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
    let zip = b"PK\x03\x04\x14\x00\x06\x00".to_vec();
    let latin1 = b"name,city\nJ\xfcrgen,K\xf6ln\n".to_vec();
    let cases: [(&str, &[u8]); 5] = [
        ("image.csv", &png),
        ("book.xlsx", &zip),
        ("latin1.csv", &latin1),
        ("empty.csv", b""),
        ("blank.csv", b"\n\n1,2\n"),
    ];
    for (name, data) in cases {
        let (code, err, _) = svc
            .post_form(
                UPLOAD,
                &[
                    FormPart::Text("Bucket", &b),
                    FormPart::File("file", Some(name), data),
                ],
            )
            .await;
        assert_eq!(
            (code, err["field"].as_str()),
            (422, Some("file")),
            "{name}: {err}"
        );
        assert!(
            err["error"].as_str().unwrap().contains("not CSV"),
            "{name}: {err}"
        );
    }
    nothing_left(&b).await;

    std::fs::write(s.data_dir().join("image.csv"), &png).unwrap();
    let (code, err) = svc
        .post(
            UPLOAD,
            &json!({"Bucket": b, "local_dataset_path": "image.csv"}),
        )
        .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (422, Some("local_dataset_path")),
        "{err}"
    );
    nothing_left(&b).await;
}

#[tokio::test]
async fn local_files_must_be_inside_the_data_directory() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = service(
        &s,
        &[("EXECUTOR_MULTIPART_THRESHOLD_BYTES", (5 * MIB).to_string())],
    );
    let b = bucket("ds-local").await;
    let data_dir = s.data_dir();
    std::fs::create_dir_all(data_dir.join("sub")).unwrap();
    let small = csv(3000);
    std::fs::write(data_dir.join("sub/train.csv"), &small).unwrap();
    let large = csv(6 * MIB);
    std::fs::write(data_dir.join("large.csv"), &large).unwrap();
    let outside = s.dir.path().join("secret.csv");
    std::fs::write(&outside, "a,b\n1,2\n").unwrap();
    std::os::unix::fs::symlink(&outside, data_dir.join("link.csv")).unwrap();

    let (code, rec) = svc
        .post(
            &format!("{UPLOAD}?{ESSEDUM}"),
            &json!({"Bucket": b, "local_dataset_path": "sub/train.csv"}),
        )
        .await;
    assert_eq!(code, 201, "{rec}");
    assert_eq!(rec["name"], "datasets/train.csv");
    assert_eq!(
        emu.get_object_bytes(&b, "datasets/train.csv")
            .await
            .unwrap(),
        small
    );

    // An absolute path inside, a chosen key, and a file above the threshold (multipart).
    let (code, rec) = svc
        .post(
            UPLOAD,
            &json!({"Bucket": b, "Key": "in/large.csv",
                    "local_dataset_path": data_dir.join("large.csv").to_str().unwrap()}),
        )
        .await;
    assert_eq!(
        (code, rec["name"].as_str()),
        (201, Some("in/large.csv")),
        "{rec}"
    );
    assert!(emu.get_object_bytes(&b, "in/large.csv").await.unwrap() == large);
    assert_eq!(emu.open_multipart_uploads(&b).await, Vec::<String>::new());

    for bad in [
        outside.to_str().unwrap(),
        "../secret.csv",
        "link.csv",
        "/etc/passwd",
        "missing.csv",
        "sub",
        "",
    ] {
        let (code, err) = svc
            .post(UPLOAD, &json!({"Bucket": b, "local_dataset_path": bad}))
            .await;
        assert_eq!(
            (code, err["field"].as_str()),
            (422, Some("local_dataset_path")),
            "{bad}: {err}"
        );
    }
    // The backend's extra keys are ignored.
    let (code, rec) = svc
        .post(
            UPLOAD,
            &json!({"Bucket": b, "local_dataset_path": "sub/train.csv", "Extra": 1, "Key": ""}),
        )
        .await;
    assert_eq!(
        (code, rec["name"].as_str()),
        (201, Some("datasets/train.csv")),
        "{rec}"
    );
    let (code, err) = svc
        .post(
            UPLOAD,
            &json!({"Bucket": b, "local_dataset_path": "sub/train.csv", "Key": "a/../b"}),
        )
        .await;
    assert_eq!((code, err["field"].as_str()), (422, Some("Key")), "{err}");
    let (code, err) = svc.post(UPLOAD, &json!(["not", "an", "object"])).await;
    assert_eq!(code, 400, "{err}");
    let keys: BTreeSet<String> = emu.list_keys(&b, "").await.into_iter().collect();
    assert_eq!(
        keys,
        BTreeSet::from(["datasets/train.csv".to_string(), "in/large.csv".to_string()])
    );
}

#[tokio::test]
async fn listing_pages_through_every_object_once() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let b = bucket("ds-list").await;
    let svc = service(&s, &[("EXECUTOR_DATASETS_BUCKET", b.clone())]);
    for i in 0..7 {
        emu.put_object(&b, &format!("datasets/part-{i}.csv"), "a,b\n1,2\n")
            .await;
    }
    emu.put_object(&b, "other/x.csv", "a\n1\n").await;

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path =
            format!("/api/service/v1/datasets/list?{ESSEDUM}&prefix=datasets/&page_size=3");
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={}", url_encode(t)));
        }
        let (code, page, headers) = svc.get_with_headers(&path).await;
        assert_eq!(code, 200, "{page}");
        let records = page.as_array().unwrap();
        pages.push(records.len());
        for r in records {
            assert_eq!(r["type"], "s3-dataset");
            assert_eq!(r["container"], b.as_str());
            seen.push(r["name"].as_str().unwrap().to_string());
        }
        token = headers
            .get("X-Next-Page-Token")
            .map(|v| v.to_str().unwrap().to_string());
        if token.is_none() {
            break;
        }
        assert!(pages.len() < 10, "too many pages: {pages:?}");
    }
    assert_eq!(pages, [3, 3, 1]);
    let unique_names: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique_names.len(), 7, "{seen:?}");
    assert!(
        seen.iter().all(|k| k.starts_with("datasets/part-")),
        "{seen:?}"
    );

    // Without a prefix: the whole bucket; default page size holds all eight.
    let (code, all, headers) = svc.get_with_headers("/api/service/v1/datasets/list").await;
    assert_eq!(
        (code, all.as_array().map(Vec::len)),
        (200, Some(8)),
        "{all}"
    );
    assert!(headers.get("X-Next-Page-Token").is_none());

    for (query, field, status) in [
        ("page_size=0", "page_size", 422),
        ("page_size=1001", "page_size", 422),
        ("Bucket=Not_A_Bucket", "Bucket", 422),
        ("Bucket=no-such-bucket-here", "Bucket", 422),
    ] {
        let (code, err) = svc
            .get(&format!("/api/service/v1/datasets/list?{query}"))
            .await;
        assert_eq!(
            (code, err["field"].as_str()),
            (status, Some(field)),
            "{query}: {err}"
        );
    }
    let (code, err) = svc
        .get("/api/service/v1/datasets/list?page_size=many")
        .await;
    assert_eq!(code, 400, "{err}");
    // A token only continues the listing it came from.
    let (_, _, headers) = svc
        .get_with_headers("/api/service/v1/datasets/list?prefix=datasets/&page_size=3")
        .await;
    let token = headers["X-Next-Page-Token"].to_str().unwrap().to_string();
    for query in [
        format!("prefix=other/&page_token={token}"),
        "page_token=bogus".to_string(),
    ] {
        let (code, err) = svc
            .get(&format!("/api/service/v1/datasets/list?{query}"))
            .await;
        assert_eq!(
            (code, err["field"].as_str()),
            (422, Some("page_token")),
            "{query}: {err}"
        );
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn get_export_and_delete_by_id() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = service(&s, &[]);
    let b = bucket("ds-ops").await;
    let b2 = bucket("ds-ops-copy").await;
    let data = csv(5000);
    let (code, rec, _) = svc
        .post_form(
            UPLOAD,
            &[
                FormPart::Text("Bucket", &b),
                FormPart::File("file", Some("churn.csv"), &data),
            ],
        )
        .await;
    assert_eq!(code, 201, "{rec}");
    let id = rec["id"].as_str().unwrap().to_string();
    let path = |id: &str| format!("/api/service/v1/datasets/{id}");

    // Export to another bucket, and within the same bucket.
    let (code, copy) = svc
        .post(
            &format!("{}/export?{ESSEDUM}", path(&id)),
            &json!({"Bucket": b2, "Key": "copies/churn.csv"}),
        )
        .await;
    assert_eq!(code, 201, "{copy}");
    assert_eq!(copy["status"], "Exported");
    assert_eq!(copy["artifacts"], format!("s3://{b2}/copies/churn.csv"));
    assert_eq!(copy["id"], id_of(&b2, "copies/churn.csv"));
    assert_eq!(
        emu.get_object_bytes(&b2, "copies/churn.csv").await.unwrap(),
        data
    );
    let (code, copy) = svc
        .post(
            &format!("{}/export", path(&id)),
            &json!({"Key": "datasets/churn-2.csv"}),
        )
        .await;
    assert_eq!(
        (code, copy["container"].as_str()),
        (201, Some(b.as_str())),
        "{copy}"
    );
    let copy_id = copy["id"].as_str().unwrap().to_string();
    assert_eq!(svc.get(&path(&copy_id)).await.0, 200);

    for (body, field, status) in [
        (json!({}), "Key", 422),
        (json!({"Key": "datasets/churn.csv"}), "Key", 422),
        (
            json!({"Bucket": "no-such-bucket-here", "Key": "x.csv"}),
            "Bucket",
            422,
        ),
        (json!({"Bucket": "Bad_Name"}), "Bucket", 422),
        (json!({"Key": "../x.csv"}), "Key", 422),
        // Unknown keys are ignored and "" is absent: this names the dataset itself.
        (json!({"Other": 1, "Bucket": ""}), "Key", 422),
    ] {
        let (code, err) = svc.post(&format!("{}/export", path(&id)), &body).await;
        assert_eq!(
            (code, err["field"].as_str()),
            (status, Some(field)),
            "{body}: {err}"
        );
    }

    // Delete: the record as it was, then the dataset is gone.
    let (code, gone) = svc.delete(&format!("{}?{ESSEDUM}", path(&id))).await;
    assert_eq!(
        (code, gone["status"].as_str()),
        (200, Some("Deleted")),
        "{gone}"
    );
    assert_eq!(emu.get_object_bytes(&b, "datasets/churn.csv").await, None);
    assert_eq!(svc.get(&path(&id)).await.0, 404);
    assert_eq!(svc.delete(&path(&id)).await.0, 404);
    let (code, _) = svc
        .post(
            &format!("{}/export", path(&id)),
            &json!({"Key": "elsewhere.csv"}),
        )
        .await;
    assert_eq!(code, 404);

    // An id in a bucket that does not exist is not found; an encoded id naming an invalid bucket
    // or key is a 400.
    assert_eq!(
        svc.get(&path(&id_of("no-such-bucket-here", "a.csv")))
            .await
            .0,
        404
    );
    for bad in [
        &id_of("Bad_Bucket", "a.csv"),
        &id_of(&b, "../a.csv"),
        &id_of(&b, ""),
    ] {
        let (code, err) = svc.get(&path(bad)).await;
        assert_eq!(
            (code, err["field"].as_str()),
            (400, Some("id")),
            "{bad}: {err}"
        );
        assert_eq!(svc.delete(&path(bad)).await.0, 400, "{bad}");
    }
    // Anything else is a plain S3 key (the Python service's ids): it needs a bucket.
    for key in ["not*an*id", "Y"] {
        let (code, err) = svc.get(&path(key)).await;
        assert_eq!(
            (code, err["field"].as_str()),
            (422, Some("Bucket")),
            "{key}: {err}"
        );
        let (code, err) = svc.get(&format!("{}?Bucket={b}", path(key))).await;
        assert_eq!(code, 404, "{key}: {err}");
    }
}

#[tokio::test]
async fn the_bucket_comes_from_the_request_or_the_configuration() {
    let emu = Emulator::shared();
    let s = Scratch::new();
    let svc = service(&s, &[]);
    let data = csv(100);
    let (code, err, _) = svc
        .post_form(UPLOAD, &[FormPart::File("file", Some("a.csv"), &data)])
        .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (422, Some("Bucket")),
        "{err}"
    );
    let (code, err) = svc
        .post(UPLOAD, &json!({"local_dataset_path": "a.csv"}))
        .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (422, Some("Bucket")),
        "{err}"
    );
    let (code, err) = svc.get("/api/service/v1/datasets/list").await;
    assert_eq!(
        (code, err["field"].as_str()),
        (422, Some("Bucket")),
        "{err}"
    );
    let (code, err, _) = svc
        .post_form(
            UPLOAD,
            &[
                FormPart::Text("Bucket", "no-such-bucket-here"),
                FormPart::File("file", Some("a.csv"), &data),
            ],
        )
        .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (422, Some("Bucket")),
        "{err}"
    );
    drop(svc);

    let b = bucket("ds-default").await;
    let s = Scratch::new();
    let svc = service(&s, &[("EXECUTOR_DATASETS_BUCKET", b.clone())]);
    let (code, rec, _) = svc
        .post_form(UPLOAD, &[FormPart::File("file", Some("a.csv"), &data)])
        .await;
    assert_eq!(
        (code, rec["container"].as_str()),
        (201, Some(b.as_str())),
        "{rec}"
    );
    assert_eq!(
        emu.get_object_bytes(&b, "datasets/a.csv").await.unwrap(),
        data
    );
}

#[tokio::test]
async fn the_form_is_checked_and_a_late_field_leaves_nothing() {
    let s = Scratch::new();
    let svc = service(&s, &[]);
    let b = bucket("ds-form").await;
    let data = csv(100);
    let cases: Vec<(Vec<FormPart<'_>>, u16, &str)> = vec![
        (vec![FormPart::Text("Bucket", &b)], 422, "file"),
        (
            vec![
                FormPart::Text("Bucket", &b),
                FormPart::Text("Bucket", &b),
                FormPart::File("file", Some("a.csv"), &data),
            ],
            400,
            "Bucket",
        ),
        (
            vec![
                FormPart::Text("Bucket", &b),
                FormPart::Text("Key", "a/../b.csv"),
                FormPart::File("file", Some("a.csv"), &data),
            ],
            422,
            "Key",
        ),
        (
            vec![
                FormPart::Text("Bucket", &b),
                FormPart::Text("name", ".."),
                FormPart::File("file", Some("a.csv"), &data),
            ],
            422,
            "name",
        ),
        (
            vec![
                FormPart::Text("Bucket", &b),
                FormPart::File("file", None, &data),
            ],
            422,
            "Key",
        ),
        (
            vec![
                FormPart::Text("Bucket", &b),
                FormPart::File("file", Some("a.csv"), &data),
                FormPart::Text("Key", "late.csv"),
            ],
            400,
            "Key",
        ),
    ];
    for (parts, status, field) in cases {
        let (code, err, _) = svc.post_form(UPLOAD, &parts).await;
        assert_eq!(
            (code, err["field"].as_str()),
            (status, Some(field)),
            "{err}"
        );
    }
    nothing_left(&b).await;

    // A form field this service does not use is read and ignored, as the backend may send one.
    let (code, rec, _) = svc
        .post_form(
            UPLOAD,
            &[
                FormPart::Text("Bucket", &b),
                FormPart::Text("Colour", "red"),
                FormPart::Text("Key", ""),
                FormPart::File("file", Some("a.csv"), &data),
            ],
        )
        .await;
    assert_eq!(
        (code, rec["name"].as_str()),
        (201, Some("datasets/a.csv")),
        "{rec}"
    );
    let b = bucket("ds-form-2").await;

    // Neither a form nor JSON.
    let r = support::client()
        .post(svc.url(UPLOAD))
        .header("Content-Type", "text/csv")
        .body("a,b\n")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    nothing_left(&b).await;
}

#[tokio::test]
async fn a_plain_s3_key_is_accepted_as_an_id_as_the_python_service_used() {
    let emu = Emulator::shared();
    let b = bucket("ds-keys").await;
    let s = Scratch::new();
    let svc = service(&s, &[("EXECUTOR_DATASETS_BUCKET", b.clone())]);
    let data = csv(300);
    for key in ["iris.csv", "aws_sagemaker/train.csv"] {
        let (code, rec, _) = svc
            .post_form(
                UPLOAD,
                &[
                    FormPart::Text("Key", key),
                    FormPart::File("file", Some("x.csv"), &data),
                ],
            )
            .await;
        assert_eq!(code, 201, "{rec}");
    }
    // The Python service's dataset ids were S3 keys in the connection's bucket (mlops/aws.py
    // projects_datasets_get: head_object(Bucket=bucketName, Key=dataset_id)). A key holding '/'
    // travels URL-encoded in the path.
    for (key, in_path) in [
        ("iris.csv", "iris.csv"),
        ("aws_sagemaker/train.csv", "aws_sagemaker%2Ftrain.csv"),
    ] {
        let (code, rec) = svc
            .get(&format!("/api/service/v1/datasets/{in_path}?{ESSEDUM}"))
            .await;
        assert_eq!(code, 200, "{in_path}: {rec}");
        assert_eq!(
            (rec["sourceID"].as_str(), rec["id"].as_str()),
            (Some(key), Some(id_of(&b, key).as_str()))
        );
    }
    let (code, copy) = svc
        .post(
            "/api/service/v1/datasets/iris.csv/export",
            &json!({"Key": "copies/iris.csv"}),
        )
        .await;
    assert_eq!(
        (code, copy["name"].as_str()),
        (201, Some("copies/iris.csv")),
        "{copy}"
    );
    let (code, gone) = svc.delete("/api/service/v1/datasets/iris.csv").await;
    assert_eq!(
        (code, gone["status"].as_str()),
        (200, Some("Deleted")),
        "{gone}"
    );
    assert_eq!(emu.get_object_bytes(&b, "iris.csv").await, None);
    let (code, err) = svc.get("/api/service/v1/datasets/iris.csv").await;
    assert_eq!(code, 404, "{err}");
    assert!(err["error"].is_string(), "{err}");
    // A key that cannot be one is named.
    let (code, err) = svc.get("/api/service/v1/datasets/a%2F..%2Fb.csv").await;
    assert_eq!((code, err["field"].as_str()), (400, Some("id")), "{err}");
}

#[tokio::test]
async fn the_bucket_defaults_to_the_connections_bucket_name() {
    use support::fake_backend::FakeBackend;
    let emu = Emulator::shared();
    let b = bucket("ds-conn").await;
    let backend = FakeBackend::start().await;
    // fetchConnectionDetailsByAdapterInstance's connectionDetails carry bucketName (datasource.py).
    backend.set_connection(
        "churn",
        "aws-1",
        json!({"accessKey": "AKIADATASETS", "secretKey": "s3cret-value", "region": "us-east-1", "bucketName": b}),
    );
    backend.set_connection(
        "churn",
        "no-bucket",
        json!({"accessKey": "AKIADATASETS", "secretKey": "s3cret-value", "region": "us-east-1"}),
    );
    let s = Scratch::new();
    let svc = service(&s, &[("EXECUTOR_CONNECTION_ALLOW", backend.base_url())]);
    let referer = backend.base_url();
    let data = csv(200);
    let (body_type, body) = support::form(&[FormPart::File("file", Some("sales.csv"), &data)]);
    let r = support::client()
        .post(svc.url(&format!("{UPLOAD}?{ESSEDUM}&isRemoteDS=true")))
        .header("Referer", &referer)
        .header("Content-Type", body_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let (code, rec) = support::reply(r).await;
    assert_eq!(
        (code, rec["container"].as_str()),
        (201, Some(b.as_str())),
        "{rec}"
    );
    assert_eq!(
        emu.get_object_bytes(&b, "datasets/sales.csv")
            .await
            .unwrap(),
        data
    );
    let get = |path: String| {
        let referer = referer.clone();
        let url = svc.url(&path);
        async move {
            support::reply(
                support::client()
                    .get(url)
                    .header("Referer", referer)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (code, list) = get(format!("/api/service/v1/datasets/list?{ESSEDUM}")).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list[0]["sourceID"], "datasets/sales.csv", "{list}");
    let (code, rec) = get(format!(
        "/api/service/v1/datasets/datasets%2Fsales.csv?{ESSEDUM}"
    ))
    .await;
    assert_eq!(
        (code, rec["container"].as_str()),
        (200, Some(b.as_str())),
        "{rec}"
    );

    // A connection without bucketName, and no configured bucket: a 422 naming Bucket.
    let (code, err) = get(
        "/api/service/v1/datasets/list?adapter_instance=no-bucket&project=churn&isCached=false"
            .to_string(),
    )
    .await;
    assert_eq!(
        (code, err["field"].as_str()),
        (422, Some("Bucket")),
        "{err}"
    );
}
