//! Encryption of stored credentials.
//!
//! Some runs carry credentials (AWS keys from a request body) that are needed again after a
//! restart, so they are written to the store only sealed by a [`SecretBox`]: XChaCha20-Poly1305
//! with a random 24-byte nonce, authenticated together with caller-chosen associated data (the
//! run id, so a sealed blob cannot be moved to another run).
//!
//! Sealed layout: `version (1 byte, = 1) ‖ nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes)`.
//!
//! The key comes from the operator (64 hex characters) or from a key file that is created on
//! first start with mode 0600. Neither the key nor a [`Secret`] is ever printed.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Current sealed-format version.
const VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Why a sealed blob could not be opened. Neither variant says anything about the content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Too short, or an unknown format version.
    #[error("sealed secret is malformed")]
    Malformed,
    /// Authentication failed: another key, other associated data, or altered bytes.
    #[error("sealed secret cannot be opened: wrong key, wrong owner or tampered")]
    WrongKeyOrTampered,
}

/// Symmetric key for sealing stored credentials.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

impl SecretBox {
    fn from_key(key: &[u8; KEY_LEN]) -> SecretBox {
        SecretBox {
            cipher: XChaCha20Poly1305::new(&Key::from(*key)),
        }
    }

    /// A box with a fresh random key (tests, or a throw-away store).
    pub fn generate() -> SecretBox {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        SecretBox {
            cipher: XChaCha20Poly1305::new(&key),
        }
    }

    /// The operator's key: `key_hex` (64 hex characters) when given, else the content of
    /// `key_file`, which is created with a fresh random key (mode 0600) when it does not exist.
    /// An existing key file readable by group or others is refused.
    pub fn load(key_hex: Option<&str>, key_file: &Path) -> Result<SecretBox, String> {
        if let Some(hex) = key_hex {
            let key = decode_key(hex)
                .ok_or("the secret key must be exactly 64 hexadecimal characters (32 bytes)")?;
            return Ok(SecretBox::from_key(&key));
        }
        match fs::metadata(key_file) {
            Ok(_) => read_key_file(key_file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match create_key_file(key_file) {
                Ok(key) => Ok(SecretBox::from_key(&key)),
                // Someone else created it in the meantime: use theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key_file(key_file),
                Err(e) => Err(format!(
                    "cannot create secret key file {}: {e}",
                    key_file.display()
                )),
            },
            Err(e) => Err(format!(
                "cannot access secret key file {}: {e}",
                key_file.display()
            )),
        }
    }

    /// Encrypts `plaintext`, bound to `aad` (which is authenticated but not stored).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Only fails for plaintexts beyond the cipher's limit (~256 GiB).
            .expect("XChaCha20-Poly1305 encryption");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts what [`seal`](Self::seal) produced with the same key and `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Malformed)?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| SecretError::WrongKeyOrTampered)
    }

    /// Seals the JSON form of `value`.
    pub fn seal_json<T: Serialize>(&self, value: &T, aad: &[u8]) -> Vec<u8> {
        let json = serde_json::to_vec(value).expect("serialising a value to JSON");
        self.seal(&json, aad)
    }

    /// Opens a blob made by [`seal_json`](Self::seal_json). A blob that decrypts but does not
    /// hold a `T` is [`SecretError::Malformed`] (the parse error is not reported: it could
    /// quote the content).
    pub fn open_json<T: DeserializeOwned>(
        &self,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<T, SecretError> {
        let json = self.open(sealed, aad)?;
        serde_json::from_slice(&json).map_err(|_| SecretError::Malformed)
    }
}

fn decode_key(hex: &str) -> Option<[u8; KEY_LEN]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 2 * KEY_LEN {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(key)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn encode_key(key: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * key.len());
    for b in key {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

fn read_key_file(path: &Path) -> Result<SecretBox, String> {
    let shown = path.display();
    let meta =
        fs::metadata(path).map_err(|e| format!("cannot access secret key file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("secret key file {shown} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "secret key file {shown} is accessible by group or others (mode {mode:03o}); \
             restrict it with `chmod 600 {shown}`"
        ));
    }
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret key file {shown}: {e}"))?;
    let key = decode_key(&text).ok_or_else(|| {
        format!("secret key file {shown} must hold exactly 64 hexadecimal characters (32 bytes)")
    })?;
    Ok(SecretBox::from_key(&key))
}

/// Creates `path` (never overwriting) holding a fresh random key, readable only by the owner.
///
/// The key is written and synced to a private temporary file in the same directory, which is
/// then hard-linked to `path`: the link either appears with the whole key in it or fails with
/// `AlreadyExists`, so a process starting at the same moment never reads a file still being
/// written (nor does a start after a crash find an empty key file).
fn create_key_file(path: &Path) -> io::Result<[u8; KEY_LEN]> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let generated = XChaCha20Poly1305::generate_key(&mut OsRng);
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&generated);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    let temp = path.with_file_name(temp_name);
    let linked = write_new_file(&temp, format!("{}\n", encode_key(&key)).as_bytes())
        .and_then(|()| fs::hard_link(&temp, path));
    let _ = fs::remove_file(&temp);
    linked?;
    // The new name is durable only once its directory is.
    if let Ok(d) = fs::File::open(dir.unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(key)
}

/// Writes `content` to a file that must not exist yet (mode 0600) and syncs it.
fn write_new_file(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

/// A credential in memory. Prints as `***`; serialises as the plain string, so it must only
/// be serialised into something that is then sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The actual value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &[u8] = b"0190b7a2-0000-7000-8000-000000000001";

    #[test]
    fn round_trip() {
        let b = SecretBox::generate();
        let sealed = b.seal(b"AKIA/secret", RUN);
        assert_eq!(sealed[0], VERSION);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + b"AKIA/secret".len() + TAG_LEN);
        assert_eq!(b.open(&sealed, RUN).unwrap(), b"AKIA/secret");
        // Fresh nonce each time.
        assert_ne!(b.seal(b"AKIA/secret", RUN), sealed);
        // Empty plaintext works too.
        assert_eq!(b.open(&b.seal(b"", RUN), RUN).unwrap(), b"");
    }

    #[test]
    fn wrong_aad_fails() {
        let b = SecretBox::generate();
        let sealed = b.seal(b"x", RUN);
        assert_eq!(
            b.open(&sealed, b"another-run"),
            Err(SecretError::WrongKeyOrTampered)
        );
    }

    #[test]
    fn tampered_byte_fails() {
        let b = SecretBox::generate();
        let sealed = b.seal(b"some credential", RUN);
        for i in 1..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert_eq!(
                b.open(&t, RUN),
                Err(SecretError::WrongKeyOrTampered),
                "byte {i}"
            );
        }
        let mut t = sealed.clone();
        t[0] = 2;
        assert_eq!(b.open(&t, RUN), Err(SecretError::Malformed));
        assert_eq!(b.open(&sealed[..20], RUN), Err(SecretError::Malformed));
        assert_eq!(b.open(&[], RUN), Err(SecretError::Malformed));
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = SecretBox::generate().seal(b"x", RUN);
        assert_eq!(
            SecretBox::generate().open(&sealed, RUN),
            Err(SecretError::WrongKeyOrTampered)
        );
    }

    #[test]
    fn json_round_trip_and_secret_serialises_transparently() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Creds {
            access_key: String,
            secret_key: Secret,
        }
        let b = SecretBox::generate();
        let creds = Creds {
            access_key: "AKIA1".into(),
            secret_key: Secret::new("s3cr3t"),
        };
        assert_eq!(
            serde_json::to_string(&creds).unwrap(),
            r#"{"access_key":"AKIA1","secret_key":"s3cr3t"}"#
        );
        let sealed = b.seal_json(&creds, RUN);
        let back: Creds = b.open_json(&sealed, RUN).unwrap();
        assert_eq!(back, creds);
        assert_eq!(back.secret_key.expose(), "s3cr3t");
        assert_eq!(
            b.open_json::<Creds>(&b.seal(b"not json", RUN), RUN),
            Err(SecretError::Malformed)
        );
    }

    #[test]
    fn key_from_hex() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let a = SecretBox::load(Some(hex), Path::new("/nonexistent/never/used")).unwrap();
        let b = SecretBox::load(Some(&format!("{hex}\n")), Path::new("/nonexistent")).unwrap();
        assert_eq!(a.open(&b.seal(b"x", RUN), RUN).unwrap(), b"x");
    }

    #[test]
    fn bad_hex_refused_without_echo() {
        for bad in [
            "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            "00112233",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00",
            "",
            "s3cr3t-value-that-must-not-leak",
        ] {
            let err = SecretBox::load(Some(bad), Path::new("/nonexistent")).unwrap_err();
            assert!(err.contains("64 hexadecimal"), "{err}");
            if !bad.is_empty() {
                assert!(!err.contains(bad), "{err}");
            }
        }
    }

    #[test]
    fn key_file_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/secret.key");
        let a = SecretBox::load(None, &path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        let b = SecretBox::load(None, &path).unwrap();
        assert_eq!(b.open(&a.seal(b"kept", RUN), RUN).unwrap(), b"kept");
        // The file content is the key: loading it as hex gives the same box.
        let c = SecretBox::load(Some(text.trim()), Path::new("/nonexistent")).unwrap();
        assert_eq!(c.open(&a.seal(b"kept", RUN), RUN).unwrap(), b"kept");
    }

    #[test]
    fn processes_creating_the_key_file_at_once_all_read_one_whole_key() {
        // Many starts racing on a fresh key file: each either creates it whole or reads the
        // one that won; none reads a file still being written, and all hold the same key.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("k{round}/secret.key"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let boxes: Vec<SecretBox> = (0..8)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        SecretBox::load(None, &path)
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap().unwrap())
                .collect();
            let sealed = boxes[0].seal(b"kept", RUN);
            for b in &boxes {
                assert_eq!(b.open(&sealed, RUN).unwrap(), b"kept");
            }
            // Only the key file is left behind, no temporary file.
            let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
            assert_eq!(names.len(), 1, "{names:?}");
        }
    }

    #[test]
    fn group_readable_key_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        SecretBox::load(None, &path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = SecretBox::load(None, &path).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o604)).unwrap();
        assert!(SecretBox::load(None, &path).is_err());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(SecretBox::load(None, &path).is_ok());
    }

    #[test]
    fn bad_key_file_refused_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(b"not-a-key-at-all\n").unwrap();
        drop(f);
        let err = SecretBox::load(None, &path).unwrap_err();
        assert!(err.contains("64 hexadecimal"), "{err}");
        assert!(!err.contains("not-a-key"), "{err}");
    }

    #[test]
    fn debug_hides_key_and_secret() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let b = SecretBox::load(Some(hex), Path::new("/nonexistent")).unwrap();
        let shown = format!("{b:?}");
        assert_eq!(shown, "SecretBox(***)");
        assert!(!shown.contains("0011"));
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
