//! A reader that hands out a few bytes at a time, as a slow socket might: for the streaming
//! decoders (tests and the fuzz targets, which include this file by path).

/// Hands out 1 to 7 bytes a read (how many: the next byte's value mod 7, plus one).
pub struct Trickle<'a>(pub &'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(1 + self.0.first().map_or(0, |b| *b as usize % 7));
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}
