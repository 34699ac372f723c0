//! Video in and out through Debian's `ffmpeg` and `ffprobe` (installed by
//! `scripts/fetch-data.sh ffmpeg`): frames stream from a child process's pipe as RGB, so a long
//! video is never held whole in memory; frames written are piped into an H.264 encoder.
//!
//! Decoding asks ffmpeg for `rgb24` at the chosen rate (its `fps` filter: frame `i` is the
//! source frame shown at `i / rate` seconds) with swscale's default conversion, the same
//! command imageio-ffmpeg runs, so frames equal what Python readers built on ffmpeg give.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// What `ffprobe` says of a video's first video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    /// The stream's frame rate (`r_frame_rate`).
    pub fps: f64,
    /// Seconds.
    pub duration: f64,
}

fn tool(name: &str) -> Result<Command> {
    let mut c = Command::new(name);
    c.stdin(Stdio::null());
    // Present on PATH? A clear message beats "No such file or directory".
    if which(name).is_none() {
        bail!("`{name}` is not installed: run scripts/fetch-data.sh ffmpeg (Debian's ffmpeg)");
    }
    Ok(c)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A rate written as `num/den` or a decimal.
fn parse_rate(s: &str) -> Option<f64> {
    match s.split_once('/') {
        Some((n, d)) => {
            let (n, d): (f64, f64) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
            (d > 0.0).then_some(n / d)
        }
        None => s.trim().parse().ok(),
    }
}

/// Size, rate and duration of the first video stream of `path`.
pub fn probe(path: &Path) -> Result<VideoInfo> {
    if !path.is_file() {
        bail!("{}: no such video file", path.display());
    }
    let out = tool("ffprobe")?
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=width,height,r_frame_rate,duration:format=duration")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .with_context(|| format!("cannot run ffprobe on {}", path.display()))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{}: not a readable video ({})",
            path.display(),
            err.lines().last().unwrap_or("ffprobe failed").trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: ffprobe gave no JSON", path.display()))?;
    let Some(s) = v["streams"].get(0) else {
        bail!("{}: not a readable video (no video stream)", path.display());
    };
    let width = s["width"].as_u64().unwrap_or(0) as u32;
    let height = s["height"].as_u64().unwrap_or(0) as u32;
    let fps = s["r_frame_rate"]
        .as_str()
        .and_then(parse_rate)
        .unwrap_or(0.0);
    let duration = s["duration"]
        .as_str()
        .or(v["format"]["duration"].as_str())
        .and_then(parse_rate)
        .unwrap_or(0.0);
    if width == 0 || height == 0 || !(fps.is_finite() && fps > 0.0) {
        bail!(
            "{}: not a readable video (stream of {width}x{height} at {fps} fps)",
            path.display()
        );
    }
    if !(duration.is_finite() && duration > 0.0) {
        bail!("{}: not a readable video (no duration)", path.display());
    }
    Ok(VideoInfo {
        width,
        height,
        fps,
        duration,
    })
}

/// Frames of one video, decoded as they are read.
pub struct FrameReader {
    path: PathBuf,
    child: Child,
    stdout: ChildStdout,
    pub info: VideoInfo,
    /// Frames per second delivered.
    pub rate: f64,
    /// Size of the frames delivered.
    pub width: u32,
    pub height: u32,
    index: usize,
    done: bool,
}

impl FrameReader {
    /// Open `path`, delivering `rate` frames a second (the stream's own rate when `None`), each
    /// resized to `size` (width, height) when given (bicubic, ffmpeg's default).
    pub fn open(path: &Path, rate: Option<f64>, size: Option<(u32, u32)>) -> Result<Self> {
        let info = probe(path)?;
        if let Some(r) = rate {
            if !(r.is_finite() && r > 0.0 && r <= 1000.0) {
                bail!("frame rate {r}: give a rate above 0 and at most 1000 frames a second");
            }
        }
        let mut filters = Vec::new();
        if let Some(r) = rate {
            filters.push(format!("fps={r}"));
        }
        if let Some((w, h)) = size {
            if w == 0 || h == 0 || w > 8192 || h > 8192 {
                bail!("frame size {w}x{h}: give sides from 1 to 8192");
            }
            filters.push(format!("scale={w}:{h}"));
        }
        let mut cmd = tool("ffmpeg")?;
        cmd.args(["-v", "error", "-nostdin", "-i"]).arg(path);
        if !filters.is_empty() {
            cmd.args(["-vf", &filters.join(",")]);
        }
        cmd.args(["-an", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run ffmpeg on {}", path.display()))?;
        let stdout = child.stdout.take().context("ffmpeg has no stdout")?;
        let (width, height) = size.unwrap_or((info.width, info.height));
        Ok(Self {
            path: path.to_path_buf(),
            child,
            stdout,
            rate: rate.unwrap_or(info.fps),
            width,
            height,
            info,
            index: 0,
            done: false,
        })
    }

    /// Seconds at which delivered frame `i` is shown (its timestamp, `i / rate`).
    pub fn time_of(&self, i: usize) -> f64 {
        i as f64 / self.rate
    }

    /// Seconds at which the source frame behind delivered frame `i` was shown. ffmpeg's `fps`
    /// filter gives output frame `i` the last source frame before `(i + 0.5) / rate`, so the
    /// picture can be up to half an output period later than its timestamp (a source of constant
    /// rate starting at 0 assumed).
    pub fn source_time(&self, i: usize) -> f64 {
        let fps = self.info.fps;
        if (self.rate - fps).abs() < 1e-9 {
            return i as f64 / fps;
        }
        let k = ((i as f64 + 0.5) / self.rate * fps - 1e-9).ceil() - 1.0;
        k.max(0.0) / fps
    }

    /// The next frame, `None` at the end; an error names the file when ffmpeg fails part way.
    pub fn next_frame(&mut self) -> Result<Option<image::RgbImage>> {
        if self.done {
            return Ok(None);
        }
        let n = self.width as usize * self.height as usize * 3;
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let k = self
                .stdout
                .read(&mut buf[got..])
                .with_context(|| format!("{}: reading decoded frames", self.path.display()))?;
            if k == 0 {
                break;
            }
            got += k;
        }
        if got < n {
            self.done = true;
            self.finish()?;
            if got > 0 {
                bail!(
                    "{}: frame {} is cut short ({got} of {n} bytes)",
                    self.path.display(),
                    self.index
                );
            }
            if self.index == 0 {
                bail!(
                    "{}: not a readable video (no frames decoded)",
                    self.path.display()
                );
            }
            return Ok(None);
        }
        self.index += 1;
        Ok(image::RgbImage::from_raw(self.width, self.height, buf))
    }

    /// Wait for ffmpeg; its error output names what went wrong with the file.
    fn finish(&mut self) -> Result<()> {
        let status = self.child.wait()?;
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        if !status.success() {
            bail!(
                "{}: not a readable video ({})",
                self.path.display(),
                err.lines().last().unwrap_or("ffmpeg failed").trim()
            );
        }
        Ok(())
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An H.264 MP4 being written: frames go to ffmpeg's stdin; [`VideoWriter::finish`] renames
/// the finished file into place, so a failure never leaves a half-written video.
pub struct VideoWriter {
    path: PathBuf,
    tmp: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    width: u32,
    height: u32,
}

impl VideoWriter {
    /// `crf` is x264's quality (0 lossless luma, 18 visually lossless). One encoder thread and
    /// bit-exact flags make the file depend on the frames only.
    pub fn create(path: &Path, width: u32, height: u32, fps: u32, crf: u32) -> Result<Self> {
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            bail!(
                "{}: H.264 in yuv420p needs even sides, not {width}x{height}",
                path.display()
            );
        }
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp{}.mp4", std::process::id()));
        let mut child = tool("ffmpeg")?
            .args([
                "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
            ])
            .arg(format!("{width}x{height}"))
            .args([
                "-r",
                &fps.to_string(),
                "-i",
                "-",
                "-c:v",
                "libx264",
                "-threads",
                "1",
            ])
            .args(["-crf", &crf.to_string(), "-pix_fmt", "yuv420p"])
            .args([
                "-fflags",
                "+bitexact",
                "-flags:v",
                "+bitexact",
                "-map_metadata",
                "-1",
            ])
            .arg(&tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run ffmpeg to write {}", path.display()))?;
        let stdin = child.stdin.take();
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            child,
            stdin,
            width,
            height,
        })
    }

    pub fn push(&mut self, frame: &image::RgbImage) -> Result<()> {
        if frame.width() != self.width || frame.height() != self.height {
            bail!(
                "{}: frame of {}x{} in a {}x{} video",
                self.path.display(),
                frame.width(),
                frame.height(),
                self.width,
                self.height
            );
        }
        let stdin = self.stdin.as_mut().context("the encoder is closed")?;
        if stdin.write_all(frame.as_raw()).is_err() {
            return self.fail();
        }
        Ok(())
    }

    fn fail<T>(&mut self) -> Result<T> {
        self.stdin.take();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = std::fs::remove_file(&self.tmp);
        bail!(
            "{}: ffmpeg could not encode ({})",
            self.path.display(),
            err.lines().last().unwrap_or("no message").trim()
        )
    }

    /// Close the encoder and move the file into place.
    pub fn finish(mut self) -> Result<()> {
        self.stdin.take();
        let status = self.child.wait()?;
        if !status.success() {
            return self.fail();
        }
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot rename into {}", self.path.display()))
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            self.stdin.take();
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_fractions_or_decimals() {
        assert_eq!(parse_rate("30000/1001"), Some(30000.0 / 1001.0));
        assert_eq!(parse_rate("25/1"), Some(25.0));
        assert_eq!(parse_rate("10.5"), Some(10.5));
        assert_eq!(parse_rate("1/0"), None);
        assert_eq!(parse_rate("x"), None);
    }
}
