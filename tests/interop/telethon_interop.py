"""Interop test: Telethon, an independent MTProto client, against `fake-telegram`.

Usage: python telethon_interop.py PATH/TO/fake-telegram

Telethon performs the full DH handshake with the fake DC's RSA key (registered with
telethon.crypto.rsa.add_key), logs in with bot_token=, receives a pushed voice message as
a NewMessage event and downloads it (sha256 checked against the control API's), then
disconnects, misses a message, reconnects with catch_up=True and receives it through
updates.getDifference. Exits 0 only if every check passed.
"""
import asyncio
import hashlib
import json
import subprocess
import sys
import urllib.request

import rsa as pyrsa  # noqa: F401  (Telethon's dependency; add_key parses PKCS#1 with it)
from telethon import TelegramClient, events
from telethon.crypto import rsa as telethon_rsa
from telethon.sessions import MemorySession

TOKEN = "7000001:AAinterop-token"
USERNAME = "interop_bot"
SENDER = 424242
API_ID, API_HASH = 12345, "0123456789abcdef0123456789abcdef"

checks = []


def check(name, ok, detail=""):
    checks.append(ok)
    print(("ok   " if ok else "FAIL ") + name + (f" ({detail})" if detail and not ok else ""), flush=True)


def control(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def main(binary):
    dc = subprocess.Popen([binary, "--dcs", "2"], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(await asyncio.to_thread(dc.stdout.readline))
        base = info["control"]
        host, port = info["dcs"]["1"].rsplit(":", 1)
        control(base, "POST", "/bots", {"token": TOKEN, "username": USERNAME})
        telethon_rsa.add_key(info["rsa_public_key_pem"], old=False)

        session = MemorySession()
        session.set_dc(1, host, int(port))
        received = asyncio.Queue()

        async def on_message(event):
            data = await event.message.download_media(file=bytes)
            await received.put((event.message.id, event.message.voice is not None,
                                hashlib.sha256(data).hexdigest(), len(data)))

        # 1. Handshake, bot login, a pushed voice message, its download.
        client = TelegramClient(session, API_ID, API_HASH, catch_up=True)
        client.add_event_handler(on_message, events.NewMessage)
        await client.start(bot_token=TOKEN)
        me = await client.get_me()
        check("logged in as the bot", me.bot and me.id == 7000001 and me.username == USERNAME, repr(me))
        sent = control(base, "POST", "/messages", {
            "bot": USERNAME, "chat_id": SENDER, "from_user_id": SENDER,
            "voice": {"size": 300000, "duration": 7, "mime_type": "audio/ogg"}})
        msg_id, is_voice, sha, size = await asyncio.wait_for(received.get(), 30)
        check("pushed message arrives as a voice NewMessage", is_voice and msg_id == sent["message_id"])
        check("downloaded voice matches the control API's sha256", sha == sent["sha256"] and size == 300000,
              f"{sha} vs {sent['sha256']}, {size} bytes")
        await client.disconnect()

        # 2. A message while away, then a reconnect that catches up.
        missed = control(base, "POST", "/messages", {
            "bot": USERNAME, "chat_id": SENDER, "from_user_id": SENDER,
            "voice": {"size": 200000, "duration": 3, "mime_type": "audio/ogg", "seed": 7}})
        client = TelegramClient(session, API_ID, API_HASH, catch_up=True)
        client.add_event_handler(on_message, events.NewMessage)
        await client.start(bot_token=TOKEN)
        msg_id, is_voice, sha, size = await asyncio.wait_for(received.get(), 30)
        check("missed message arrives through getDifference", is_voice and msg_id == missed["message_id"])
        check("missed voice matches its sha256", sha == missed["sha256"] and size == 200000)
        await client.disconnect()

        stats = control(base, "GET", "/stats")
        check("one handshake, one login (the reconnect reused both)",
              stats["handshakes"] == 1 and stats["logins"][USERNAME] == 1, json.dumps(stats))
        check("no auth-key conflict", stats["auth_key_conflicts"] == 0, json.dumps(stats))
        check("two files served", stats["files_served"] == 2, json.dumps(stats))
    finally:
        dc.terminate()
        dc.wait(10)
    failed = checks.count(False)
    print(f"telethon: {len(checks) - failed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(1 if asyncio.run(asyncio.wait_for(main(sys.argv[1]), 120)) else 0)
