// jobstack page: submit jobs with POST /jobs, follow every replica's recent jobs with GET /events.
// Plain DOM, no library; text from the server is only ever set as textContent.
"use strict";

const ROWS = 20;
const STREAM_RETRY_MS = 10000; // after the server refused the stream (503: too many open)

const page = document.getElementById("page");
const settings = {
  maxValue: Number(page.dataset.maxValue),
  randomMin: Number(page.dataset.randomMin),
  randomMax: Number(page.dataset.randomMax),
  drained: page.dataset.drained === "true",
};
const form = document.getElementById("submit-form");
const valueInput = document.getElementById("job-value");
const randomButton = document.getElementById("submit-random");
const submitStatus = document.getElementById("submit-status");
const connection = document.getElementById("connection");
const jobsBody = document.getElementById("jobs");
const noJobs = document.getElementById("no-jobs");
const rows = new Map(); // job_id -> <tr>
const mine = new Set(); // jobs submitted from this page: their outcome is announced

function say(element, text, isError) {
  element.textContent = text;
  element.classList.toggle("error", Boolean(isError));
}

function shortId(jobId) {
  return jobId.slice(0, 8);
}

function describe(job) {
  if (job.state === "pending") return "";
  if (job.error) return job.error;
  if (job.finished_at) return "finished " + new Date(job.finished_at).toLocaleTimeString();
  return job.state;
}

function cell(row, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function newRow(jobId) {
  const row = document.createElement("tr");
  const link = document.createElement("a");
  link.href = "/jobs/" + encodeURIComponent(jobId);
  link.title = jobId;
  const code = document.createElement("code");
  code.textContent = shortId(jobId);
  link.appendChild(code);
  cell(row).appendChild(link);
  const badge = document.createElement("span");
  cell(row).appendChild(badge);
  cell(row);
  cell(row, "number");
  cell(row);
  row.dataset.jobId = jobId;
  return row;
}

function fill(row, job) {
  const [, stateCell, engineCell, durationCell, resultCell] = row.children;
  const badge = stateCell.firstChild;
  badge.className = "state state-" + job.state;
  badge.textContent = job.state;
  row.dataset.state = job.state;
  engineCell.textContent = job.engine || "";
  durationCell.textContent = job.duration_seconds == null ? "" : job.duration_seconds.toFixed(2) + " s";
  resultCell.textContent = describe(job);
}

function trim() {
  while (jobsBody.rows.length > ROWS) {
    const last = jobsBody.lastElementChild;
    rows.delete(last.dataset.jobId);
    last.remove();
  }
  noJobs.hidden = jobsBody.rows.length > 0;
}

// A job the page has not shown yet goes on top; a known one is updated where it is.
function upsert(job) {
  let row = rows.get(job.job_id);
  if (!row) {
    row = newRow(job.job_id);
    rows.set(job.job_id, row);
    jobsBody.prepend(row);
  } else if (row.dataset.state !== "pending" && job.state === "pending") {
    return; // the result is in already; a late "pending" (our own 202) must not undo it
  }
  const finishedNow = row.dataset.state !== job.state && job.state !== "pending";
  fill(row, job);
  if (mine.has(job.job_id)) {
    row.classList.add("mine");
    if (finishedNow) announce(job);
  }
}

// The outcome of a job submitted from this page replaces "accepted: pending" (a live region).
function announce(job) {
  const took = job.duration_seconds == null ? "" : " in " + job.duration_seconds.toFixed(2) + " s";
  say(submitStatus, "Job " + shortId(job.job_id) + " " + job.state + took + ".", job.state !== "succeeded");
}

function showSnapshot(jobs) {
  rows.clear();
  jobsBody.replaceChildren();
  // The server sends newest first; upsert puts each on top, so add the oldest first.
  for (const job of jobs.slice().reverse()) upsert(job);
  trim();
}

function showQueue(queue) {
  const show = (id, value) => {
    document.getElementById(id).textContent = value == null ? "unknown" : String(value);
  };
  show("queue-ready", queue.ready);
  show("queue-consumers", queue.consumers);
  show("queue-pending", queue.pending);
}

async function submit(value) {
  if (!Number.isInteger(value) || value < 0 || value > settings.maxValue) {
    say(submitStatus, "Enter a whole number of seconds from 0 to " + settings.maxValue + ".", true);
    valueInput.focus();
    return;
  }
  say(submitStatus, "Submitting a job of " + value + " s…");
  let response;
  let answer = {};
  try {
    response = await fetch("/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ type: "integer", value: value }),
    });
    answer = await response.json().catch(() => ({}));
  } catch (error) {
    say(submitStatus, "The service cannot be reached: " + error.message, true);
    return;
  }
  if (response.status === 202) {
    mine.add(answer.job_id);
    const known = rows.get(answer.job_id);
    say(submitStatus, "Job " + shortId(answer.job_id) + " (" + value + " s) accepted: pending.");
    if (known && known.dataset.state !== "pending") {
      // Its result came in before this answer.
      known.classList.add("mine");
      say(submitStatus, "Job " + shortId(answer.job_id) + " " + known.dataset.state + ".");
    }
    upsert({ job_id: answer.job_id, state: "pending" });
    trim();
    return;
  }
  let message = answer.error || "the service answered " + response.status;
  const retry = response.headers.get("Retry-After");
  if (retry && !answer.submit_to) message += " (retry in " + retry + " s)";
  say(submitStatus, "Not accepted: " + message, true);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = valueInput.value.trim();
  submit(text === "" ? NaN : Number(text));
});

randomButton.addEventListener("click", () => {
  const span = settings.randomMax - settings.randomMin + 1;
  submit(settings.randomMin + Math.floor(Math.random() * span));
});

function follow() {
  const source = new EventSource("/events");
  source.addEventListener("open", () => {
    connection.textContent = "Live";
    connection.className = "connection live";
  });
  source.addEventListener("snapshot", (message) => {
    const data = JSON.parse(message.data);
    showSnapshot(data.jobs);
    showQueue(data.queue);
  });
  source.addEventListener("jobs", (message) => {
    for (const job of JSON.parse(message.data).jobs) upsert(job);
    trim();
  });
  source.addEventListener("queue", (message) => showQueue(JSON.parse(message.data)));
  source.addEventListener("error", () => {
    connection.className = "connection lost";
    if (source.readyState === EventSource.CLOSED) {
      // Refused (too many open streams) or not a stream: the browser gives up, so try again later.
      connection.textContent = "Live updates unavailable, retrying soon";
      setTimeout(follow, STREAM_RETRY_MS);
    } else {
      connection.textContent = "Reconnecting…";
    }
  });
}

if (settings.drained) {
  say(submitStatus, "This region takes no new jobs: see the notice above.");
}
follow();
