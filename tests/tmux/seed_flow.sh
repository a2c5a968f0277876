#!/usr/bin/env bash
# Walks the seed flow in `sop demo` from the keyboard, in tmux at 80×24, and asserts on the screen:
# add connection → share → new round-robin rule with the three agents → a customer message arrives
# → claim → reply → delivered.
# Usage: tests/tmux/seed_flow.sh [path/to/sop]
set -euo pipefail
SOP=$(realpath "${1:-target/debug/sop}")
S="sop-seed-$$"
DIR=$(mktemp -d)
cleanup() {
  tmux kill-session -t "$S" 2>/dev/null || true
  pkill -f "demo --data-dir $DIR" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

screen() { tmux capture-pane -p -t "$S"; }
keys() { tmux send-keys -t "$S" "$@"; }
# wait_for PATTERN [SECONDS]: an extended regex that must appear on screen.
wait_for() {
  local deadline=$((SECONDS + ${2:-10}))
  while [ $SECONDS -lt $deadline ]; do
    if screen | grep -qE -- "$1"; then return 0; fi
    sleep 0.1
  done
  echo "FAIL: /$1/ not on screen after ${2:-10}s:"; screen; exit 1
}
step() { echo "ok - $*"; }

tmux new-session -d -s "$S" -x 80 -y 24 "$SOP demo --data-dir $DIR --pace 2; sleep 60"
wait_for "CuongLM \(admin\).*Đã kết nối" 20; step "console opened as the admin, link up"

keys 2; wait_for "Trang của tôi \(0\)"; step "Connections tab"
keys n; wait_for "Bước 2: Cấp quyền"; step "consent URL shown"
wait_for "Bước 3: Chọn quyền chat" 20; step "connected live (Kết nối OA thành công)"
keys Down Enter; wait_for "Thêm quy tắc"; step "Chia sẻ hội thoại"
keys Enter; wait_for "Tên quy tắc"
keys -l "Chia chat cho nhóm Best Sale"; keys Tab Tab
for u in HuongNT256 QueCT3 TriLM22; do keys -l "$u"; keys Enter; done
wait_for "User nhận hội thoại: HuongNT256, QueCT3, TriLM22"; step "three agents added"
keys C-s; sleep 0.5
keys 3; wait_for "Chia chat cho nhóm Best Sale.*Chia xoay vòng"; step "round-robin rule saved"
keys 2; wait_for "Đã kết nối" ; wait_for "Chia sẻ tin nhắn"; step "page shows Đã kết nối, shared"

keys 1; wait_for "Chưa ai nhận \([1-9]" 20; step "a customer message arrived (agents away: queued)"
keys g; wait_for "c Nhận chat"; step "jumped to the most urgent"
keys c; wait_for "Phụ trách: CuongLM"; step "claimed"
keys r; keys -l "Dạ, em chào anh chị ạ"; keys Enter
wait_for "→ Lê Mạnh Cường ✓✓" 15; step "reply delivered (✓✓)"
screen
keys Escape; sleep 0.5; keys q
wait_for "Attach another console" 10; step "demo prints how to attach a second console"
echo "tmux seed flow: all steps passed"
