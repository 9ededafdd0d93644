"""Interop test: Telethon, an independent MTProto client, against `fake-telegram`.

Usage: python telethon_interop.py PATH/TO/fake-telegram

Telethon performs the full DH handshake with the fake DC's RSA key (registered with
telethon.crypto.rsa.add_key), logs in with bot_token=, receives a pushed voice message as
a NewMessage event and downloads it (sha256 checked against the control API's), a text as
an updateShortMessage and a supergroup message, downloads the voice again on a second
session of the same auth key from the same address (as Telegram's own apps do), then
disconnects, misses a message and a supergroup message, reconnects with catch_up=True and
receives them through updates.getDifference and updates.getChannelDifference. Last, the same
auth key used from two addresses at once (127.0.0.2 and 127.0.0.3) is refused with
AUTH_KEY_DUPLICATED. Exits 0 only if every check passed.
"""
import asyncio
import hashlib
import json
import subprocess
import sys
import urllib.request

import rsa as pyrsa  # noqa: F401  (Telethon's dependency; add_key parses PKCS#1 with it)
from telethon import TelegramClient, errors, events, types
from telethon.crypto import AuthKey
from telethon.crypto import rsa as telethon_rsa
from telethon.sessions import MemorySession

TOKEN = "7000001:AAinterop-token"
USERNAME = "interop_bot"
SENDER = 424242
HOST_A, HOST_B = "127.0.0.2", "127.0.0.3"

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


def same_key_session(session, host, port):
    """A new session (Telethon picks a new session id) on the auth key of `session`."""
    other = MemorySession()
    other.set_dc(1, host, port)
    other.auth_key = AuthKey(session.auth_key.key)
    return other


async def main(binary):
    dc = subprocess.Popen([binary, "--dcs", "2"], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(await asyncio.to_thread(dc.stdout.readline))
        base = info["control"]
        api_id, api_hash = info["api_id"], info["api_hash"]
        host, port = info["dcs"]["1"].rsplit(":", 1)
        port = int(port)
        control(base, "POST", "/bots", {"token": TOKEN, "username": USERNAME})
        telethon_rsa.add_key(info["rsa_public_key_pem"], old=False)

        session = MemorySession()
        session.set_dc(1, host, port)
        received = asyncio.Queue()

        raw_updates = []

        async def on_message(event):
            data = await event.message.download_media(file=bytes) if event.message.media else None
            await received.put((event.message, data and hashlib.sha256(data).hexdigest(), data and len(data)))

        async def on_raw(update):
            raw_updates.append(type(update).__name__)

        def client(session, address=HOST_A):
            c = TelegramClient(session, api_id, api_hash, catch_up=True, local_addr=address)
            c.add_event_handler(on_message, events.NewMessage)
            c.add_event_handler(on_raw, events.Raw)
            return c

        # 1. Handshake, bot login, a pushed voice message, its download.
        main_client = client(session)
        await main_client.start(bot_token=TOKEN)
        me = await main_client.get_me()
        check("logged in as the bot", me.bot and me.id == 7000001 and me.username == USERNAME, repr(me))
        sent = control(base, "POST", "/messages", {
            "bot": USERNAME, "chat_id": SENDER, "from_user_id": SENDER,
            "voice": {"size": 300000, "duration": 7, "mime_type": "audio/ogg"}})
        voice_message, sha, size = await asyncio.wait_for(received.get(), 30)
        check("pushed message arrives as a voice NewMessage",
              voice_message.voice is not None and voice_message.id == sent["message_id"])
        check("downloaded voice matches the control API's sha256", sha == sent["sha256"] and size == 300000,
              f"{sha} vs {sent['sha256']}, {size} bytes")

        # A plain text arrives as Telegram sends it: an updateShortMessage.
        text = control(base, "POST", "/messages", {
            "bot": USERNAME, "chat_id": SENDER, "from_user_id": SENDER, "text": "hello"})
        message, _, _ = await asyncio.wait_for(received.get(), 30)
        check("a text arrives as an updateShortMessage",
              message.id == text["message_id"] and message.message == "hello"
              and "UpdateShortMessage" in raw_updates, repr(raw_updates))

        # A supergroup the bot is in: its messages have a pts of their own.
        group = control(base, "POST", "/channels", {"title": "interop group", "bots": [USERNAME]})
        live = control(base, "POST", "/messages", {
            "channel_id": group["channel_id"], "from_user_id": SENDER, "text": "in the group"})
        message, _, _ = await asyncio.wait_for(received.get(), 30)
        check("a supergroup message arrives as updateNewChannelMessage",
              message.id == live["message_id"] and message.message == "in the group"
              and isinstance(message.peer_id, types.PeerChannel)
              and "UpdateNewChannelMessage" in raw_updates, repr(raw_updates))

        # 2. The same file again on a second session of the same key, from the same address,
        # while the first session goes on: no conflict.
        second = TelegramClient(same_key_session(session, host, port), api_id, api_hash, local_addr=HOST_A)
        await second.connect()
        data = await second.download_media(voice_message, file=bytes)
        check("a second session of the same key downloads the file",
              hashlib.sha256(data).hexdigest() == sent["sha256"])
        me = await main_client.get_me()
        check("the first session goes on", me.id == 7000001)
        await second.disconnect()
        stats = control(base, "GET", "/stats")
        check("two sessions from one address are no conflict",
              stats["auth_key_conflicts"] == 0 and stats["peak_live_sessions"][USERNAME] >= 2
              and stats["peak_peer_addresses"][USERNAME] == 1, json.dumps(stats))
        await main_client.disconnect()

        # 3. A message and a supergroup message while away, then a reconnect that catches up.
        missed = control(base, "POST", "/messages", {
            "bot": USERNAME, "chat_id": SENDER, "from_user_id": SENDER,
            "voice": {"size": 200000, "duration": 3, "mime_type": "audio/ogg", "seed": 7}})
        missed_in_group = control(base, "POST", "/messages", {
            "channel_id": group["channel_id"], "from_user_id": SENDER, "text": "while away"})
        main_client = client(session)
        await main_client.start(bot_token=TOKEN)
        caught_up = {}
        for _ in range(2):
            message, sha, size = await asyncio.wait_for(received.get(), 30)
            caught_up[isinstance(message.peer_id, types.PeerChannel)] = (message, sha, size)
        message, sha, size = caught_up.get(False, (None, None, None))
        check("missed message arrives through getDifference",
              message is not None and message.voice is not None and message.id == missed["message_id"])
        check("missed voice matches its sha256", sha == missed["sha256"] and size == 200000)
        message, _, _ = caught_up.get(True, (None, None, None))
        stats = control(base, "GET", "/stats")
        check("missed supergroup message arrives through getChannelDifference",
              message is not None and message.id == missed_in_group["message_id"]
              and message.message == "while away"
              and stats["calls"].get("updates.getChannelDifference", 0) >= 1, json.dumps(stats["calls"]))

        stats = control(base, "GET", "/stats")
        check("one handshake, one login (the reconnect reused both)",
              stats["handshakes"] == 1 and stats["logins"][USERNAME] == 1, json.dumps(stats))
        check("no auth-key conflict", stats["auth_key_conflicts"] == 0, json.dumps(stats))
        check("three files served", stats["files_served"] == 3, json.dumps(stats))

        # 4. The same key from a second address while the first is in use: AUTH_KEY_DUPLICATED.
        elsewhere = TelegramClient(same_key_session(session, host, port), api_id, api_hash, local_addr=HOST_B)
        refused = []
        for c in (elsewhere, main_client, elsewhere, main_client):
            try:
                if not c.is_connected():
                    await asyncio.wait_for(c.connect(), 10)
                await asyncio.wait_for(c.get_me(), 10)
            except errors.AuthKeyDuplicatedError:
                refused.append(c)
            except Exception:  # the revoked key: closed connections, -404
                pass
        stats = control(base, "GET", "/stats")
        check("one key from two addresses at once is AUTH_KEY_DUPLICATED",
              len(refused) >= 1 and stats["auth_key_conflicts"] == 1, json.dumps(stats))
        for c in (elsewhere, main_client):
            try:
                await asyncio.wait_for(c.disconnect(), 10)
            except Exception:
                pass
    finally:
        dc.terminate()
        dc.wait(10)
    failed = checks.count(False)
    print(f"telethon: {len(checks) - failed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(1 if asyncio.run(asyncio.wait_for(main(sys.argv[1]), 120)) else 0)
