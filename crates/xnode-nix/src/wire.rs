//! The protocol between peers, `/xnode/nix/1.0.0`: one stream per question. The asker
//! writes an [`Ask`] as one JSON line; the holder answers with one JSON line, an
//! [`Answer`], and after `found` exactly `size` bytes: the narinfo's text, or the NAR.
//! Lines are bounded, and unknown fields are ignored so a newer peer is understood.

use std::fmt;

use futures_util::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use libp2p::StreamProtocol;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol's name on the wire.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/xnode/nix/1.0.0");

/// The longest line either side reads: an ask or an answer is a few dozen bytes.
pub const MAX_LINE: u64 = 4096;

/// A store path's hash part: the 32 characters a binary cache files a path under
/// (`/nix/store/<hash part>-<name>`), checked to be no more than that.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HashPart(String);

/// Not a store path's hash part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadHash(pub String);

impl HashPart {
    /// Checks `text`.
    pub fn parse(text: &str) -> Result<HashPart, BadHash> {
        xnode_spec::rules::hash_part(text).map_err(BadHash)?;
        Ok(HashPart(text.to_owned()))
    }

    /// The hash part of a store path (`/nix/store/<hash>-<name>`, or its base name).
    pub fn of_path(path: &str) -> Result<HashPart, BadHash> {
        let base = path.rsplit('/').next().unwrap_or(path);
        let hash = base.split_once('-').map_or(base, |(hash, _)| hash);
        HashPart::parse(hash).map_err(|_| {
            let path: String = path.chars().take(256).collect();
            BadHash(format!("{path:?} is not a store path"))
        })
    }

    /// The 32 characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HashPart {
    type Error = BadHash;
    fn try_from(text: String) -> Result<HashPart, BadHash> {
        HashPart::parse(&text)
    }
}

impl From<HashPart> for String {
    fn from(hash: HashPart) -> String {
        hash.0
    }
}

impl fmt::Display for HashPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is asked of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    /// Its narinfo: references, NAR hash and size, signatures.
    Narinfo,
    /// Its NAR, uncompressed.
    Nar,
}

/// A question, the first and only line the asker writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// Which path.
    pub hash: HashPart,
    /// What of it.
    pub want: Want,
}

/// The holder's answer line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// Here it is: `size` bytes follow.
    Found {
        /// How many.
        size: u64,
    },
    /// This node does not hold the path.
    Missing,
    /// Not for the asker: not a member, or too many transfers at once.
    Refused {
        /// Why, for the asker's log.
        reason: String,
    },
    /// An answer from a newer release this one does not know.
    #[serde(other)]
    Unknown,
}

/// A peer broke the protocol, or the stream failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The stream failed.
    #[error("the stream failed: {0}")]
    Io(#[from] std::io::Error),
    /// A line over [`MAX_LINE`], or one that ended early.
    #[error("a line over {MAX_LINE} bytes or cut short")]
    Line,
    /// A line that is not the JSON expected.
    #[error("not a valid message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes `message` as one line and flushes it.
pub async fn write_line<W: AsyncWrite + Unpin>(
    out: &mut W,
    message: &impl Serialize,
) -> Result<(), WireError> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await?;
    Ok(())
}

/// Reads one line of at most [`MAX_LINE`] bytes as a `T`.
pub async fn read_line<R: AsyncBufRead + Unpin, T: DeserializeOwned>(
    input: &mut R,
) -> Result<T, WireError> {
    let mut line = Vec::new();
    let mut bounded = futures_util::io::AsyncReadExt::take(&mut *input, MAX_LINE);
    bounded.read_until(b'\n', &mut line).await?;
    if line.pop() != Some(b'\n') {
        return Err(WireError::Line);
    }
    Ok(serde_json::from_slice(&line)?)
}

/// Asks `peer` over a new stream: its answer, and the stream to read what follows.
pub async fn ask(
    control: &mut libp2p_stream::Control,
    peer: libp2p::PeerId,
    ask: &Ask,
) -> Result<(Answer, BufReader<libp2p::Stream>), String> {
    let stream = control
        .open_stream(peer, PROTOCOL)
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = BufReader::new(stream);
    write_line(&mut stream, ask)
        .await
        .map_err(|e| e.to_string())?;
    let answer = read_line(&mut stream).await.map_err(|e| e.to_string())?;
    Ok((answer, stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::io::Cursor;

    #[test]
    fn hash_parts_are_32_characters_of_nix_base32() {
        let good = "3xa9msjahh3yldycg70v09sr9hbswcma";
        assert_eq!(HashPart::parse(good).unwrap().as_str(), good);
        for bad in [
            "",
            "3xa9msjahh3yldycg70v09sr9hbswcm",
            "3xa9msjahh3yldycg70v09sr9hbswcmaa",
            "exa9msjahh3yldycg70v09sr9hbswcma",
            "3XA9MSJAHH3YLDYCG70V09SR9HBSWCMA",
            "../../../../etc/passwd0000000000",
        ] {
            assert!(HashPart::parse(bad).is_err(), "{bad}");
        }
        let path = format!("/nix/store/{good}-nixt.txt");
        assert_eq!(HashPart::of_path(&path).unwrap().as_str(), good);
        assert!(HashPart::of_path("/nix/store/nope-x").is_err());
    }

    #[tokio::test]
    async fn lines_round_trip_and_are_bounded() {
        {
            let ask = Ask {
                hash: HashPart::parse("3xa9msjahh3yldycg70v09sr9hbswcma").unwrap(),
                want: Want::Nar,
            };
            let mut out = Vec::new();
            write_line(&mut out, &ask).await.unwrap();
            let back: Ask = read_line(&mut Cursor::new(out)).await.unwrap();
            assert_eq!(back, ask);

            let long = vec![b'{'; MAX_LINE as usize + 10];
            let r: Result<Ask, _> = read_line(&mut Cursor::new(long)).await;
            assert!(matches!(r, Err(WireError::Line)));
            let cut: Result<Ask, _> = read_line(&mut Cursor::new(b"{\"hash\"".to_vec())).await;
            assert!(matches!(cut, Err(WireError::Line)));
            let bad: Result<Ask, _> = read_line(&mut Cursor::new(
                b"{\"hash\":\"../x\",\"want\":\"nar\"}\n".to_vec(),
            ))
            .await;
            assert!(matches!(bad, Err(WireError::Json(_))));
        }
    }

    #[test]
    fn a_newer_peers_answers_and_fields_are_understood() {
        let found: Answer =
            serde_json::from_str(r#"{"answer":"found","size":7,"compression":"zstd"}"#).unwrap();
        assert_eq!(found, Answer::Found { size: 7 });
        let later: Answer = serde_json::from_str(r#"{"answer":"moved","to":"x"}"#).unwrap();
        assert_eq!(later, Answer::Unknown);
        let ask: Ask = serde_json::from_str(
            r#"{"hash":"3xa9msjahh3yldycg70v09sr9hbswcma","want":"narinfo","range":[0,1]}"#,
        )
        .unwrap();
        assert_eq!(ask.want, Want::Narinfo);
    }
}
