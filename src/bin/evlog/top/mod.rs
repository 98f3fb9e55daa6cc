//! `evlog top --dir D`: a live view of a store, refreshed every second, beside the process that
//! holds it. Per topic: records, λ, bytes, the largest group lag, the holder's fsync p99; Enter
//! shows one topic's sparklines of λ and μ over the last minute, fsync p50/p99 and records per
//! fsync, its groups (committed, lag L, μ, W = L/λ, drain time) and the holder's work queues
//! (backlog, ready, leased, scheduled, dead letters, deliveries and redeliveries per second,
//! leases about to run out). Keys:
//! `q` quits, `s` changes the sort, `/` filters topics by name, arrows move, Enter and Esc open
//! and close a topic. Fits 80×24 and reads without colour.

mod model;
mod sample;

use model::{BudgetRow, FsyncRow, Model, TopicRow};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Sparkline, Table, TableState};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the view reads the store again.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Name,
    Rate,
    Lag,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Name => Sort::Rate,
            Sort::Rate => Sort::Lag,
            Sort::Lag => Sort::Name,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Rate => "λ",
            Sort::Lag => "lag",
        }
    }
}

/// What the view shows and where the user is.
struct View {
    sort: Sort,
    filter: String,
    typing: bool,
    detail: bool,
    table: TableState,
    source: &'static str,
    error: Option<String>,
}

pub fn run(dir: &Path) -> Result<(), String> {
    let mut source = sample::Source::open(dir);
    let mut model = Model::default();
    let mut view = View {
        sort: Sort::Name,
        filter: String::new(),
        typing: false,
        detail: false,
        table: TableState::default().with_selected(Some(0)),
        source: source.describe(),
        error: None,
    };
    let mut terminal = ratatui::try_init().map_err(|e| format!("terminal: {e}"))?;
    let result = (|| -> Result<(), String> {
        let mut next_sample = Instant::now();
        loop {
            if Instant::now() >= next_sample {
                match source.sample(dir) {
                    Ok(s) => {
                        model.push(s);
                        view.error = None;
                    }
                    Err(e) => view.error = Some(e),
                }
                next_sample += REFRESH;
            }
            let rows = visible(model.rows(), &view);
            terminal.draw(|f| draw(f, &rows, &mut view)).map_err(|e| format!("terminal: {e}"))?;
            let wait = next_sample.saturating_duration_since(Instant::now());
            if event::poll(wait).map_err(|e| e.to_string())?
                && let Event::Key(k) = event::read().map_err(|e| e.to_string())?
                && k.kind == KeyEventKind::Press
                && !on_key(k.code, &mut view, rows.len())
            {
                return Ok(());
            }
        }
    })();
    ratatui::restore();
    result
}

/// Applies a key; `false` to quit.
fn on_key(key: KeyCode, view: &mut View, rows: usize) -> bool {
    if view.typing {
        match key {
            KeyCode::Enter | KeyCode::Esc => view.typing = false,
            KeyCode::Backspace => {
                view.filter.pop();
            }
            KeyCode::Char(c) => view.filter.push(c),
            _ => {}
        }
        return true;
    }
    let selected = view.table.selected().unwrap_or(0);
    match key {
        KeyCode::Char('q') => return false,
        KeyCode::Char('s') => view.sort = view.sort.next(),
        KeyCode::Char('/') => {
            view.typing = true;
            view.filter.clear();
        }
        KeyCode::Enter => view.detail = true,
        KeyCode::Esc => view.detail = false,
        KeyCode::Down => view.table.select(Some((selected + 1).min(rows.saturating_sub(1)))),
        KeyCode::Up => view.table.select(Some(selected.saturating_sub(1))),
        _ => {}
    }
    true
}

/// The rows the filter keeps, in the chosen order.
fn visible(mut rows: Vec<TopicRow>, view: &View) -> Vec<TopicRow> {
    rows.retain(|r| r.topic.contains(view.filter.as_str()));
    match view.sort {
        Sort::Name => rows.sort_by(|a, b| a.topic.cmp(&b.topic)),
        Sort::Rate => rows.sort_by(|a, b| b.lambda.unwrap_or(0.0).total_cmp(&a.lambda.unwrap_or(0.0))),
        Sort::Lag => rows.sort_by_key(|r| std::cmp::Reverse(r.max_lag())),
    }
    rows
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "…".to_string(), |v| format!("{v:.0}/s"))
}

fn secs(s: Option<f64>) -> String {
    match s {
        None => "growing".to_string(),
        Some(s) if s < 120.0 => format!("{s:.1}s"),
        Some(s) if s < 7200.0 => format!("{:.1}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

fn millis(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".to_string(), |d| format!("{:.2}ms", d.as_secs_f64() * 1e3))
}

/// The fsync figures' line of a topic's detail.
fn fsync_line(f: Option<&FsyncRow>) -> String {
    match f {
        None => "fsync: no stats file from the holder (or none in the last 5 s)".to_string(),
        Some(f) => format!(
            "fsync p50 ≤ {} · p99 ≤ {} · {} records/fsync ({})",
            millis(f.p50),
            millis(f.p99),
            f.records_per_fsync.map_or_else(|| "—".to_string(), |r| format!("{r:.1}")),
            if f.recent { "last second" } else { "since open" }
        ),
    }
}

/// The budget's part of the fsync line.
fn budget_text(b: Option<&BudgetRow>) -> String {
    match b {
        None => String::new(),
        Some(b) => format!(
            "budget: {:.0}% of {} used, full {}",
            b.used_bytes as f64 * 100.0 / b.budget_bytes.max(1) as f64,
            bytes(b.budget_bytes),
            b.time_to_full.map_or_else(|| "never at this λ".to_string(), |t| format!("in {}", secs(Some(t))))
        ),
    }
}

fn bytes(b: u64) -> String {
    match b {
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1 << 30 => format!("{:.1} MiB", b as f64 / 1048576.0),
        b => format!("{:.2} GiB", b as f64 / 1073741824.0),
    }
}

fn draw(f: &mut ratatui::Frame<'_>, rows: &[TopicRow], view: &mut View) {
    let [head, body, foot] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(f.area());
    let title = format!("evlog top · {} topics · {} · sort: {}", rows.len(), view.source, view.sort.name());
    f.render_widget(Paragraph::new(Line::from(title)), head);
    let keys = match (&view.error, view.typing) {
        (Some(e), _) => format!("error: {e}"),
        (None, true) => format!("filter: {}▏ (Enter to keep, Esc)", view.filter),
        (None, false) => "q quit · s sort · / filter · ↑↓ move · Enter topic · Esc back".to_string(),
    };
    f.render_widget(Paragraph::new(Line::from(keys)), foot);
    let selected = view.table.selected().unwrap_or(0).min(rows.len().saturating_sub(1));
    match rows.get(selected) {
        Some(row) if view.detail => draw_detail(f, body, row),
        _ => draw_topics(f, body, rows, &mut view.table),
    }
}

fn draw_topics(f: &mut ratatui::Frame<'_>, area: ratatui::layout::Rect, rows: &[TopicRow], state: &mut TableState) {
    let header = Row::new(["topic", "records", "λ", "bytes", "max lag", "fsync p99"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let body = rows.iter().map(|r| {
        Row::new([
            r.topic.clone(),
            r.records.to_string(),
            rate(r.lambda),
            bytes(r.bytes),
            r.max_lag().to_string(),
            millis(r.fsync.as_ref().and_then(|f| f.p99)),
        ])
    });
    let widths = [
        Constraint::Min(16),
        Constraint::Length(12),
        Constraint::Length(10),
        Constraint::Length(11),
        Constraint::Length(10),
        Constraint::Length(9),
    ];
    let table = Table::new(body, widths)
        .header(header)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ")
        .block(Block::new().borders(Borders::TOP));
    f.render_stateful_widget(table, area, state);
}

fn draw_detail(f: &mut ratatui::Frame<'_>, area: ratatui::layout::Rect, row: &TopicRow) {
    let [spark, mu_spark, fsync, groups, queues] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(3),
        Constraint::Length(if row.budget.is_some() { 2 } else { 1 }),
        Constraint::Min(3),
        Constraint::Length(if row.queues.is_empty() { 0 } else { 3 + row.queues.len().min(4) as u16 }),
    ])
    .areas(area);
    let title = format!(
        "{}: λ {} ({}/s) over the last minute (max {}/s)",
        row.topic,
        rate(row.lambda),
        row.bytes_rate.map_or_else(|| "…".to_string(), |b| bytes(b as u64)),
        row.lambda_history.iter().max().unwrap_or(&0)
    );
    f.render_widget(
        Sparkline::default().block(Block::new().borders(Borders::TOP).title(title)).data(&row.lambda_history),
        spark,
    );
    let mu_title = format!("μ of all groups, max {}/s", row.mu_history.iter().max().unwrap_or(&0));
    f.render_widget(
        Sparkline::default().block(Block::new().borders(Borders::TOP).title(mu_title)).data(&row.mu_history),
        mu_spark,
    );
    let lines = vec![Line::from(fsync_line(row.fsync.as_ref())), Line::from(budget_text(row.budget.as_ref()))];
    f.render_widget(Paragraph::new(lines), fsync);
    if !row.queues.is_empty() {
        draw_queues(f, queues, row);
    }
    let header = Row::new(["group", "committed", "lag L", "lag s", "μ", "W = L/λ", "drain"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let body = row.groups.iter().map(|g| {
        Row::new([
            g.group.clone(),
            g.committed.to_string(),
            g.lag.to_string(),
            g.lag_secs.map_or_else(|| "—".to_string(), |s| secs(Some(s))),
            rate(g.mu),
            g.wait_secs(row.lambda).map_or_else(|| "—".to_string(), |w| secs(Some(w))),
            secs(g.drain_secs(row.lambda)),
        ])
    });
    let widths = [
        Constraint::Min(12),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    let table = Table::new(body, widths).header(header).block(Block::new().borders(Borders::TOP).title("groups"));
    f.render_widget(table, groups);
}

fn draw_queues(f: &mut ratatui::Frame<'_>, area: ratatui::layout::Rect, row: &TopicRow) {
    let header = Row::new(["queue", "backlog", "ready", "leased", "sched.", "dead", "deliv/s", "redel/s", "expiring"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let body = row.queues.iter().map(|q| {
        Row::new([
            q.queue.clone(),
            q.backlog.to_string(),
            q.ready.to_string(),
            q.leased.to_string(),
            q.scheduled.to_string(),
            q.dead_lettered.to_string(),
            rate(q.delivered_rate),
            rate(q.redelivered_rate),
            q.leases_expiring.to_string(),
        ])
    });
    let widths = [
        Constraint::Min(10),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    let table =
        Table::new(body, widths).header(header).block(Block::new().borders(Borders::TOP).title("work queues (holder)"));
    f.render_widget(table, area);
}
