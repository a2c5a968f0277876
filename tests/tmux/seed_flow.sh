#!/usr/bin/env bash
# Walks the seed flow in `sop demo` from the keyboard, in tmux at 80×24, and asserts on the screen:
# add connection → share → new round-robin rule with the three agents → a customer message arrives
# → claim → reply → delivered → a reply composed in $EDITOR (which gets every keystroke) → a synced
# history thread reads in time order (found by typing its name without accents) → a quick reply
# (`/cha` Tab) goes out with its variables filled, `/dia` with the office's map after its text →
# search without accents opens the thread at the message found → a second console as the agent HuongNT256 writes a note mentioning CuongLM, whose
# own second console shows the notification and a tag set in OA Manager live, and creates a label
# that reaches Zalo; the agent hands the conversation over to QueCT3.
# Usage: tests/tmux/seed_flow.sh [path/to/sop]
set -euo pipefail
SOP=$(realpath "${1:-target/debug/sop}")
S="sop-seed-$$"
DIR=$(mktemp -d)
cleanup() {
  tmux kill-session -t "$S" 2>/dev/null || true
  tmux kill-session -t "$S-agent" 2>/dev/null || true
  tmux kill-session -t "$S-admin" 2>/dev/null || true
  pkill -f "demo --data-dir $DIR" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

T="$S"   # the tmux session the helpers talk to
screen() { tmux capture-pane -p -t "$T"; }
keys() { tmux send-keys -t "$T" "$@"; }
# wait_for PATTERN [SECONDS]: an extended regex that must appear on screen.
wait_for() {
  local deadline=$((SECONDS + ${2:-10}))
  while [ $SECONDS -lt $deadline ]; do
    if screen | grep -qE -- "$1"; then return 0; fi
    sleep 0.1
  done
  echo "FAIL: /$1/ not on screen after ${2:-10}s:"; screen; exit 1
}
# line_of TEXT: the screen line number where TEXT first appears.
line_of() { screen | grep -nF -- "$1" | head -1 | cut -d: -f1; }

# An $EDITOR that reads one line from the terminal: any keystroke the console stole would be
# missing from the draft.
cat > "$DIR/editor.sh" <<'EOS'
#!/bin/sh
printf 'EDITOR> '
IFS= read -r line
printf '%s' "$line" > "$1"
EOS
chmod +x "$DIR/editor.sh"
step() { echo "ok - $*"; }

tmux new-session -d -s "$S" -x 80 -y 24 "EDITOR=$DIR/editor.sh $SOP demo --data-dir $DIR --pace 2; sleep 120"
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

keys -l "/cha"; wait_for "Tin nhắn mẫu.*Tab"; wait_for "/chao · Chào khách"
keys Tab; keys Enter
wait_for "giúp gì ạ\?" 15
if screen | grep -qF "{ten_"; then echo "FAIL: a variable left unfilled"; screen; exit 1; fi
screen | grep -qF "em là Lê Mạnh Cường" || { echo "FAIL: the agent's name not filled in"; screen; exit 1; }
step "quick reply /chao inserted with its variables filled and sent"

keys -l "/dia"; wait_for "/diachi · Địa chỉ văn phòng \+ \[image\]"
keys Tab; wait_for "[0-9]+/2000 \+ \[image\] ban-do.png"
keys Enter
wait_for "│  \[image\] ban-do.png" 15
wait_for "Hàng Bài, Hoàn Kiếm" 15
text=$(line_of "Hàng Bài, Hoàn Kiếm"); image=$(line_of "[image] ban-do.png")
[ "$text" -lt "$image" ] || { echo "FAIL: the map went before its text"; screen; exit 1; }
step "quick reply /diachi sends its text, then the office's map (image)"

keys Escape; wait_for "r Trả lời"
keys E; wait_for "EDITOR>"
keys -l "Soạn trong trình soạn thảo, đủ từng chữ"; keys Enter
wait_for "Soạn trong trình soạn thảo, đủ từng chữ" 10; keys Enter
wait_for "0/2000" 10   # sent: the composer is empty again
wait_for "│  Soạn trong trình soạn thảo, đủ từng chữ$" 15
step "a reply composed in \$EDITOR arrives whole (no keystroke stolen)"

keys Escape Escape A; wait_for "Tất cả"
keys / ; keys -l "tran van an"; keys Enter
wait_for "Dạ, văn phòng xin nghe ạ\." 15
first=$(line_of "Chào văn phòng, tôi cần tư vấn.")
second=$(line_of "Dạ, văn phòng xin nghe ạ.")
[ -n "$first" ] && [ "$first" -lt "$second" ] || { echo "FAIL: history out of order ($first, $second)"; screen; exit 1; }
step "synced history reads in time order, found without accents, shown as the cursor rests"
screen
keys Escape Escape
keys S; wait_for "Tìm kiếm \(S\)"
keys -l "van phong xin"; wait_for "^│  Dạ, văn phòng xin nghe ạ\." 10
keys Enter; wait_for "▶ [0-9:]+ → " 10
screen | grep -A1 "▶" | grep -qF "Dạ, văn phòng xin nghe ạ." || { echo "FAIL: not at the message found"; screen; exit 1; }
step "search without accents opens the thread at the message found (▶)"
keys Escape; sleep 0.5; keys q
wait_for "Attach another console" 10; step "demo prints how to attach a second console"

# A second console, as the agent HuongNT256: available, gets the queue, hands one over.
attach=$(tmux capture-pane -p -J -t "$T" | grep -F "# HuongNT256" | grep -oE "sop console --server [^ ]+ --token [^ ]+" | head -1 || true)
[ -n "$attach" ] || { echo "FAIL: no attach line for HuongNT256"; screen; exit 1; }
tmux new-session -d -s "$S-agent" -x 80 -y 24 "$SOP ${attach#sop } ; sleep 60"
T="$S-agent"
wait_for "HuongNT256 \(agent\).*Vắng mặt.*Đã kết nối" 20; step "agent console opened (away)"
keys a; wait_for "HuongNT256 \(agent\).*Sẵn sàng" 10
keys m; wait_for "Của tôi \([1-9]" 20; step "available: the queue is handed to her"
# CuongLM opens a console again, then Huong mentions him in a private note: his console says so.
admin_attach=$(tmux capture-pane -p -J -t "$S" | grep -F "# CuongLM" | grep -oE "sop console --server [^ ]+ --token [^ ]+" | head -1 || true)
[ -n "$admin_attach" ] || { echo "FAIL: no attach line for CuongLM"; T="$S"; screen; exit 1; }
tmux new-session -d -s "$S-admin" -x 80 -y 24 "$SOP ${admin_attach#sop } ; sleep 60"
T="$S-admin"; wait_for "CuongLM \(admin\).*Đã kết nối" 20
T="$S-agent"
keys Enter; keys N; wait_for "Ghi chú nội bộ · @ Tab"
keys -l "@cu"; wait_for "@CuongLM \(Tab\)"; keys Tab
keys -l "xem giúp khách này"; keys Enter
wait_for "✎ Ghi chú nội bộ · " 10; wait_for "┃ @CuongLM xem giúp khách này" 10
step "a private note mentioning CuongLM (completed with Tab) is in the thread"
T="$S-admin"; wait_for "✉ .*nhắc đến bạn" 10
step "CuongLM's second console shows the mention"
# Labels: Trần Văn An is tagged in Zalo's OA Manager (the simulator's control API) while CuongLM's
# inbox is filtered by that label: the row appears by itself. He then creates and puts on another
# label from the console (L), which reaches Zalo's tags.
sim=$(tmux capture-pane -p -J -t "$S" | grep -oE "Zalo simulator: http://[^ )]+" | head -1 | cut -d' ' -f3)
[ -n "$sim" ] || { echo "FAIL: the demo did not print the simulator's address"; T="$S"; screen; exit 1; }
oa=1423847451268726170; an=8400000009120000000
keys A; wait_for "Tất cả"
keys / ; keys -l "#da"; keys Enter; wait_for "Không có gì ở đây" 10
curl -fsS -X POST -H 'content-type: application/json' -d '{"name":"Đã mua"}' "$sim/sim/oas/$oa/customers/$an/tags"
wait_for "#Đã mua" 10; screen | grep -qF "Trần Văn An" || { echo "FAIL: not the tagged customer"; screen; exit 1; }
step "a tag added in OA Manager shows live (the inbox filtered by #label)"
keys L; wait_for "Nhãn · Trần Văn An" 10; wait_for "\[x\] Đã mua" 10
keys -l "VIP"; wait_for "Tạo nhãn “VIP”"; keys Enter
wait_for "#VIP #Đã mua" 10
tags=""
for _ in $(seq 50); do
  tags=$(curl -fsS "$sim/sim/oas/$oa/tags")
  echo "$tags" | grep -qF "\"VIP\":[\"$an\"]" && break
  sleep 0.2
done
echo "$tags" | grep -qF "\"VIP\":[\"$an\"]" || { echo "FAIL: Zalo has no VIP tag on the customer: $tags"; screen; exit 1; }
step "a label created in the console (L) is on the customer at Zalo"
keys Escape
keys q
T="$S-agent"
keys Escape Enter; wait_for "Phụ trách: HuongNT256"
# The customer of the open thread (the pane's title): counts move as the demo's customers write.
customer=$(screen | sed -n 3p | awk -F'│' '{print $2}' | sed 's/ · .*//')
keys t; wait_for "Chuyển cho"
wait_for "QueCT3 · Cao Thị Quế · Vắng mặt" 10; step "transfer dialog lists her colleagues with availability"
keys -l "que"; keys Tab Enter
gone=""
for _ in $(seq 100); do
  screen | awk -F'│' '{print $1}' | grep -qF -- "$customer" || { gone=yes; break; }
  sleep 0.1
done
[ -n "$gone" ] || { echo "FAIL: $customer still in her inbox after the transfer"; screen; exit 1; }
step "handed over to QueCT3 ($customer is no longer in her inbox)"
screen
keys q
echo "tmux seed flow: all steps passed"
