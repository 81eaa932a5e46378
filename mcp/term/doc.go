// Package term turns the raw bytes a program writes to a terminal into the
// plain text a person would see on it: escape sequences are interpreted or
// dropped, and carriage returns, backspaces, erasures and cursor movement
// are applied to a grid of characters, so "\r50%\r100%" reads "100%" and
// less's screen reads as the lines it shows.
//
// Where it sits in the data path: an interactive shell in a workspace is a
// pseudo-terminal in the guest; its output reaches the host as a byte
// stream, which the shell's read tool shows to the model either raw or
// "plain". Plain output is this package's: the host feeds the stream to a
// [Screen] and hands the model its text. Nothing else (colours, cursor
// shape, mouse modes, replies to queries) is kept.
//
// # Two ways to read
//
// A coding agent drives two kinds of program. A line-oriented one (bash,
// the python REPL, a build) appends lines; what the agent needs after
// sending input is the lines that appeared since it last looked, not the
// whole screen again. A full-screen one (less, top, vim) repaints a fixed
// grid on the alternate screen, often changing only a few cells; the
// agent needs the screen as it now stands. So:
//
//   - [Screen.Take] is for a live stream read piece by piece: keep one
//     Screen per terminal, Write everything the program outputs to it, and
//     Take after each wait. On the main screen Take returns the lines from
//     the first one that changed since the last Take to the end of the
//     screen (lines that scrolled off in between included); on the
//     alternate screen it returns the whole screen if anything on it
//     changed. Nothing changed: "".
//   - [Render] is stateless: it feeds one byte range to a fresh screen and
//     returns [Screen.Text], the lines that scrolled off followed by the
//     final screen. It suits output that is complete in itself (a
//     command's output, a saved log, "everything since byte offset C" for
//     a line-oriented program). A range cut out of a stream starts on a
//     blank screen at the top left, so a full-screen program's later
//     repaints, which draw only what changed, render as fragments, and a
//     range starting inside an escape sequence shows a few stray
//     characters: for those, use a Screen that has seen the whole stream.
//
// [Screen.Text] returns the scrollback and the screen (on the alternate
// screen, that screen alone); [Screen.Visible] the screen alone. In all of
// them lines are right-trimmed, a line that autowrapped at the right
// margin is joined with its continuation (so a 200-character line reads as
// one line on an 80-column screen), and trailing empty lines are dropped.
//
// # What is emulated
//
// An xterm-compatible terminal without attributes: printable text with
// autowrap, CR, LF/VT/FF, IND, NEL, RI, BS, HT (tab stops every 8
// columns), cursor motion (CUU CUD CUF CUB CNL CPL CHA HPA CUP HVP VPA
// HPR VPR CHT CBT), erasure (ED, EL, ECH), ICH, DCH, IL, DL, SU, SD, REP,
// scroll regions (DECSTBM), origin and autowrap modes, insert mode (IRM),
// DECSC/DECRC and CSI s/u, the alternate screen (DECSET 47, 1047, 1049),
// RIS and DECSTR. SGR and every other sequence is parsed and dropped; OSC,
// DCS, SOS, PM and APC strings are consumed to their terminator. BEL is
// ignored. Tab stops cannot be changed. Double-width (East Asian Wide,
// emoji) characters take two columns and combining marks none, by the
// approximate table in width.go; up to two marks are kept per character.
// The emulator never answers: it is not the terminal the program talks
// to, only a reader of what it writes.
//
// # Hostile input
//
// The bytes come from a guest and may be anything. Memory is bounded by
// construction: the screen is at most [MaxCols]×[MaxRows] cells (twice,
// with the alternate screen), the scrollback at most [MaxScrollbackLines]
// lines and [MaxScrollbackBytes] bytes of text, and the parser's state is
// fixed (see parse.go for the bounds on parameters). Text's length is
// therefore at most MaxScrollbackBytes plus a newline per scrollback line
// plus, per screen row, a newline and 12 bytes per column (a character and
// two marks). Time is linear in the input: every byte costs O(1), except
// that a sequence of a few bytes can cost up to O(rows+cols) (scrolling
// moves row pointers; clearing a row costs what was written to it;
// inserting shifts a row), and REP, which draws more than it is sent,
// spends a credit that grows with the bytes written (dispatch.go). At the
// largest screen the costliest input renders at about 100 ns a byte (see
// BenchmarkRenderHostile). No input panics; FuzzRender checks that.
package term
