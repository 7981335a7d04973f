package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// Run is the writer loop. It first replays a spool left by an earlier
// process, then flushes the queue every FlushInterval, or as soon as a full
// batch waits, and checks a failed store every RetryInterval. It returns
// when ctx is done or Close is called, without draining the queue: Close
// does that. A second Run while one is running returns at once.
func (w *Writer) Run(ctx context.Context) {
	w.mu.Lock()
	if w.closed || w.running {
		w.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	w.running, w.stopRun, w.runDone = true, cancel, done
	w.mu.Unlock()

	defer func() {
		cancel()
		w.mu.Lock()
		w.running = false
		w.mu.Unlock()
		close(done)
	}()

	w.retry(ctx)

	flushTicker := time.NewTicker(w.cfg.FlushInterval)
	defer flushTicker.Stop()
	retryTicker := time.NewTicker(w.cfg.RetryInterval)
	defer retryTicker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-retryTicker.C:
			w.retry(ctx)
		case <-w.wake:
			w.flush(ctx, false)
		case <-flushTicker.C:
			w.flush(ctx, true)
		}
	}
}

// flush writes batches from the queue: all of them, or only full ones.
func (w *Writer) flush(ctx context.Context, all bool) {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	for ctx.Err() == nil {
		if w.flushBatchLocked(ctx) == 0 {
			return
		}
		if !all && w.queueLen() < w.cfg.BatchSize {
			return
		}
	}
}

// flushBatchLocked writes one batch from the queue to the store, or to the
// spool when the store is down or older records wait in the spool. It
// returns the number of records that left the queue, where 0 means the queue is
// empty or nothing could be saved now.
func (w *Writer) flushBatchLocked(ctx context.Context) int {
	batch := w.take(w.cfg.BatchSize)
	if len(batch) == 0 {
		return 0
	}

	if !w.storeDown && w.spoolPendingLocked() == 0 {
		done, err := w.writeLocked(ctx, batch)
		if err == nil {
			w.settle(len(batch), nil)
			return len(batch)
		}
		if ctx.Err() != nil {
			// Stopping, not a store failure: Close retries the rest.
			w.settle(len(batch), batch[done:])
			return done
		}
		w.storeDown = true
		if w.downLog.allow() {
			w.log.Error("audit store write failed", "error", err, "records", len(batch)-done,
				"spool", w.spool != nil)
		}
		w.settle(done, nil)
		return done + w.spillLocked(batch[done:])
	}
	return w.spillLocked(batch)
}

// writeLocked writes gs to the store and returns how many of them, from the
// start, it has written or set aside. When the store rejects the batch but
// its ping succeeds, the writer tries the records one at a time. Each record
// rejected while the ping still succeeds goes to the rejected file (see
// keepRejectedLocked), so one bad record cannot hold back the rest.
func (w *Writer) writeLocked(ctx context.Context, gs []store.Generation) (int, error) {
	err := w.insert(ctx, gs)
	if err == nil {
		w.count(resultWritten, len(gs))
		return len(gs), nil
	}
	if ctx.Err() != nil || w.ping(ctx) != nil {
		return 0, err
	}
	for i, g := range gs {
		err := w.insert(ctx, []store.Generation{g})
		if err == nil {
			w.count(resultWritten, 1)
			continue
		}
		if ctx.Err() != nil || w.ping(ctx) != nil {
			return i, err
		}
		if kerr := w.keepRejectedLocked(g, err); kerr != nil {
			return i, kerr
		}
	}
	return len(gs), nil
}

// ping checks that the store responds within the write timeout.
func (w *Writer) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return w.st.Ping(ctx)
}

// keepRejectedLocked appends g, which the store refused with cause, to the
// rejected file next to the spool, in the spool's format, and logs it. An
// operator repairs such records by hand. Without a spool the record is
// dropped and counted as such.
func (w *Writer) keepRejectedLocked(g store.Generation, cause error) error {
	w.log.Error("audit record rejected by the store", "error", cause, "request_id", g.RequestID,
		"kept_in", w.rejectedPath())
	if w.cfg.SpoolPath == "" {
		w.count(resultDropped, 1)
		return nil
	}
	fr, err := encodeFrame(g)
	if err != nil {
		w.count(resultDropped, 1)
		return nil
	}
	f, err := os.OpenFile(w.rejectedPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open the rejected audit file: %w", err)
	}
	_, werr := f.Write(fr)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("write the rejected audit file: %w", err)
	}
	w.count(resultRejected, 1)
	return nil
}

// rejectedPath is the file of records the store refused: the spool path
// with ".rejected" appended, or "" without a spool.
func (w *Writer) rejectedPath() string {
	if w.cfg.SpoolPath == "" {
		return ""
	}
	return w.cfg.SpoolPath + ".rejected"
}

// spillLocked appends batch to the spool. Records that find no room go back
// to the head of the queue under PolicyReject. Under PolicyDropOldest, the
// oldest spooled records make room. It returns the number of records that
// left the queue.
func (w *Writer) spillLocked(batch []store.Generation) int {
	if w.spool == nil || (w.cfg.FullPolicy == PolicyReject && w.spoolFull.Load()) {
		w.settle(len(batch), batch)
		w.logFullLocked()
		return 0
	}

	frames, recs := w.encode(batch)
	if w.cfg.FullPolicy == PolicyDropOldest {
		frames, recs = w.makeRoomLocked(frames, recs)
	}
	n := w.spool.fit(frames)
	if err := w.appendLocked(frames[:n]); err != nil {
		// Treat a write error like a full spool, so that Admit stops new
		// requests once the queue fills.
		w.spoolFull.Store(true)
		w.settle(len(batch), recs)
		if w.fullLog.allow() {
			w.log.Error("audit spool write failed", "error", err, "records", len(recs))
		}
		return 0
	}
	w.count(resultSpooled, n)
	if n < len(recs) {
		w.spoolFull.Store(true)
		w.logFullLocked()
	}
	w.settle(len(batch), recs[n:])
	return len(batch) - len(recs) + n
}

// makeRoomLocked drops the oldest spooled records until frames fit. A batch
// larger than the whole spool keeps only its newest records. To spare a
// rewrite per batch, it frees at least an eighth of the spool at a time.
func (w *Writer) makeRoomLocked(frames [][]byte, recs []store.Generation) ([][]byte, []store.Generation) {
	s := w.spool
	var need int64
	for _, fr := range frames {
		need += int64(len(fr))
	}
	for need > s.maxBytes && len(frames) > 0 {
		need -= int64(len(frames[0]))
		frames, recs = frames[1:], recs[1:]
		w.count(resultDropped, 1)
	}
	if s.size+need <= s.maxBytes {
		return frames, recs
	}

	target := max(s.size+need-s.maxBytes, s.maxBytes/8)
	var freed int64
	lost := 0
	err := s.rewrite(func(fr frame, committed bool) bool {
		if committed {
			freed += fr.bytes()
			return false
		}
		if freed < target {
			freed += fr.bytes()
			lost++
			return false
		}
		return true
	})
	w.syncSpoolStatsLocked(true)
	if err != nil {
		w.log.Error("audit spool rewrite failed", "error", err)
		return frames, recs
	}
	w.count(resultDropped, lost)
	if w.fullLog.allow() {
		w.log.Error("audit spool full, oldest records dropped", "dropped", lost,
			"spool_bytes", s.size, "policy", w.cfg.FullPolicy)
	}
	return frames, recs
}

// retry reopens a spool that could not be opened, and once a failed store
// answers a ping, replays the spool.
func (w *Writer) retry(ctx context.Context) {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()

	if w.spool == nil && w.cfg.SpoolPath != "" {
		w.openSpoolLocked()
	}
	if !w.storeDown && w.spoolPendingLocked() == 0 {
		return
	}

	pingCtx, cancel := context.WithTimeout(ctx, writeTimeout)
	err := w.st.Ping(pingCtx)
	cancel()
	if err != nil {
		if ctx.Err() == nil && w.downLog.allow() {
			w.log.Error("audit store unreachable", "error", err,
				"queued", w.queueLen(), "spooled", w.spoolPendingLocked())
		}
		return
	}
	if w.storeDown {
		w.log.Info("audit store reachable again", "spooled", w.spoolPendingLocked())
	}
	w.storeDown = false
	w.replayLocked(ctx)
}

// replayLocked writes the spooled records to the store in order, a batch at
// a time. The file is emptied only after its last record is committed, so a
// failure or a crash mid-replay repeats committed rows, which the store
// skips. Between batches, a full batch in the queue goes to the end of the
// spool, so that a long replay does not let the queue grow.
func (w *Writer) replayLocked(ctx context.Context) {
	s := w.spool
	for s != nil && s.pending() > 0 && ctx.Err() == nil {
		gs, end, frames, err := s.next(w.cfg.BatchSize)
		torn := errors.Is(err, errTornFrame)
		if err != nil && !torn {
			w.log.Error("audit spool read failed", "error", err)
			return
		}
		if len(gs) > 0 {
			// A failure after some records were written leaves them in the
			// spool, and the next replay repeats them, which the store skips.
			if _, err := w.writeLocked(ctx, gs); err != nil {
				w.storeDown = ctx.Err() == nil
				if w.storeDown && w.downLog.allow() {
					w.log.Error("audit spool replay failed", "error", err, "spooled", s.pending())
				}
				return
			}
		}
		if bad := frames - len(gs); bad > 0 {
			w.count(resultDropped, bad)
			w.log.Error("audit spool records corrupt, skipped", "records", bad)
		}
		if torn {
			rest := s.pending() - frames
			w.count(resultDropped, rest)
			w.log.Error("audit spool unreadable past offset, records dropped", "error", err,
				"records", rest)
			end, frames = s.size, frames+rest
		}

		err = s.commit(end, frames)
		w.syncSpoolStatsLocked(s.size == 0)
		if err != nil {
			w.log.Error("audit spool commit failed", "error", err)
			return
		}
		if w.queueLen() >= w.cfg.BatchSize {
			w.flushBatchLocked(ctx)
		}
	}
}

// drainLocked saves every queued record for Close and returns how many it
// could not save. A store write gets half of ctx's remaining time, so the
// spool can still take the batch when the store hangs.
func (w *Writer) drainLocked(ctx context.Context) int {
	lost := 0
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.drained = true
			w.mu.Unlock()
			return lost
		}
		w.mu.Unlock()
		batch := w.take(w.cfg.BatchSize)

		if ctx.Err() == nil && !w.storeDown && w.spoolPendingLocked() == 0 {
			insertCtx, cancel := halfDeadline(ctx)
			err := w.insert(insertCtx, batch)
			cancel()
			if err == nil {
				w.settle(len(batch), nil)
				w.count(resultWritten, len(batch))
				continue
			}
			w.storeDown = true
			w.log.Error("audit store write failed at close", "error", err, "records", len(batch))
		}

		if w.spool != nil {
			// The cap yields here: losing records at shutdown is worse.
			frames, recs := w.encode(batch)
			err := w.appendLocked(frames)
			if err == nil {
				w.settle(len(batch), nil)
				w.count(resultSpooled, len(recs))
				continue
			}
			w.log.Error("audit spool write failed at close", "error", err, "records", len(recs))
		}
		w.settle(len(batch), nil)
		w.count(resultDropped, len(batch))
		lost += len(batch)
		w.log.Error("audit records lost at close", "records", len(batch))
	}
}

func halfDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Until(deadline)/2)
}

// saveLate writes one record that arrived after Close drained the queue: to
// the store, or to the spool when the store fails or the spool holds older
// records.
func (w *Writer) saveLate(g store.Generation) {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()

	s, done, err := w.spoolForLateUseLocked()
	defer done()
	if s == nil || s.pending() == 0 {
		if err := w.insert(context.Background(), []store.Generation{g}); err == nil {
			w.count(resultWritten, 1)
			return
		}
	}
	if s != nil {
		frames, recs := w.encode([]store.Generation{g})
		if err = w.appendLocked(frames); err == nil {
			w.count(resultSpooled, len(recs))
			return
		}
	}
	w.count(resultDropped, 1)
	w.log.Error("audit record lost after close", "error", err, "request_id", g.RequestID)
}

// spoolForLateUseLocked returns the open spool, or after Close opens the
// file for one use. The caller calls done when finished with s.
func (w *Writer) spoolForLateUseLocked() (s *spool, done func(), err error) {
	if w.spool != nil {
		return w.spool, func() {}, nil
	}
	if w.cfg.SpoolPath == "" {
		return nil, func() {}, nil
	}
	s, err = openSpool(w.cfg.SpoolPath, w.cfg.SpoolMaxBytes)
	if err != nil {
		return nil, func() {}, err
	}
	return s, func() { s.close() }, nil
}

func (w *Writer) openSpoolLocked() {
	s, err := openSpool(w.cfg.SpoolPath, w.cfg.SpoolMaxBytes)
	if err != nil {
		w.spoolFull.Store(true)
		if w.fullLog.allow() {
			w.log.Error("audit spool unavailable", "error", err)
		}
		return
	}
	w.spool = s
	w.spoolFull.Store(s.size >= s.maxBytes)
	w.syncSpoolStatsLocked(false)
	if s.records > 0 {
		w.log.Info("audit spool found", "records", s.records, "spool_bytes", s.size)
	}
}

// appendLocked appends frames to the spool and times the write.
func (w *Writer) appendLocked(frames [][]byte) error {
	start := time.Now()
	err := w.spool.append(frames)
	w.m.flushDuration.Observe(time.Since(start).Seconds())
	w.syncSpoolStatsLocked(false)
	return err
}

// insert writes gs to the store and times the write.
func (w *Writer) insert(ctx context.Context, gs []store.Generation) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	start := time.Now()
	err := w.st.InsertGenerations(ctx, gs)
	w.m.flushDuration.Observe(time.Since(start).Seconds())
	return err
}

// encode frames each record of batch. A record that cannot be encoded is
// dropped, and recs holds the others in the order of frames.
func (w *Writer) encode(batch []store.Generation) (frames [][]byte, recs []store.Generation) {
	frames = make([][]byte, 0, len(batch))
	recs = make([]store.Generation, 0, len(batch))
	for _, g := range batch {
		fr, err := encodeFrame(g)
		if err != nil {
			w.count(resultDropped, 1)
			w.log.Error("audit record dropped", "error", err, "request_id", g.RequestID)
			continue
		}
		frames = append(frames, fr)
		recs = append(recs, g)
	}
	return frames, recs
}

func (w *Writer) logFullLocked() {
	if !w.fullLog.allow() {
		return
	}
	attrs := []any{"policy", w.cfg.FullPolicy, "queued", w.queueLen()}
	if w.spool == nil {
		w.log.Error("audit store down and no spool, records wait in memory", attrs...)
		return
	}
	attrs = append(attrs, "spool_bytes", w.spool.size, "spool_max_bytes", w.spool.maxBytes)
	w.log.Error("audit spool full", attrs...)
}

func (w *Writer) spoolPendingLocked() int {
	if w.spool == nil {
		return 0
	}
	return w.spool.pending()
}

// syncSpoolStatsLocked publishes the spool's size. After the spool shrank,
// it has room again.
func (w *Writer) syncSpoolStatsLocked(shrunk bool) {
	s := w.spool
	if s == nil {
		return
	}
	w.spoolBytes.Store(s.size)
	w.spoolRecords.Store(int64(s.pending()))
	if shrunk {
		w.spoolFull.Store(s.size >= s.maxBytes)
	}
}

// take moves up to n records from the head of the queue to the caller,
// who must settle them.
func (w *Writer) take(n int) []store.Generation {
	w.mu.Lock()
	defer w.mu.Unlock()
	n = min(n, len(w.queue))
	batch := make([]store.Generation, n)
	copy(batch, w.queue)
	clear(w.queue[:n])
	w.queue = w.queue[n:]
	w.taken += n
	return batch
}

// settle ends a take of n records and puts unsaved back at the head of the
// queue, ahead of records that came in meanwhile.
func (w *Writer) settle(n int, unsaved []store.Generation) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.taken -= n
	if len(unsaved) > 0 {
		w.queue = append(unsaved[:len(unsaved):len(unsaved)], w.queue...)
	}
}

func (w *Writer) queueLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// count adds n records to the counter of result.
func (w *Writer) count(result string, n int) {
	if n <= 0 {
		return
	}
	switch result {
	case resultWritten:
		w.written.Add(int64(n))
	case resultSpooled:
		w.spooled.Add(int64(n))
	case resultDropped:
		w.dropped.Add(int64(n))
	case resultRejected:
		w.rejected.Add(int64(n))
	}
	w.m.records.WithLabelValues(result).Add(float64(n))
}
