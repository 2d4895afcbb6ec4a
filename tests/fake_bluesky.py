"""A local stand-in for a Bluesky PDS (XRPC over HTTP on 127.0.0.1), for tests.

Answers as the reference PDS does, for what the bot uses:
``com.atproto.server.createSession`` / ``refreshSession`` / ``getSession``,
``com.atproto.identity.resolveHandle``, ``app.bsky.actor.getProfile``,
``com.atproto.repo.createRecord`` / ``getRecord`` / ``listRecords`` /
``uploadBlob``. Errors are XRPC's ``{"error", "message"}``: an expired or
revoked token is 400 ``ExpiredToken`` (as the PDS's auth verifier says), a
missing one 401 ``AuthMissing``, a bad password 401 ``AuthenticationRequired``,
a record that is not there 400 ``RecordNotFound``, an invalid record 400
``InvalidRequest``; and a create under a key that is taken is an opaque 500,
as the reference PDS answers it (its MST refuses the add with a plain Error
that the XRPC server turns into ``InternalServerError``).

Faults (tests/fake_x.py's ``Fault``) script the rest: 429 with
``RateLimit-*`` headers, a 5xx, a hold after the record was made.
``expire_access()`` makes every access token issued so far answer
``ExpiredToken``; ``revoke_refresh()`` does the same to refresh tokens.
``.sessions_created`` counts logins; ``.requests`` keeps every request.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
from typing import Any
from urllib.parse import quote

import regex
from fake_x import Answer, FakeHTTPServer, Fault, Recorded, json_answer

XRPC = "/xrpc/"
TID_RE = regex.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")


def xrpc_error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    return json_answer(status, {"error": error, "message": message}, headers)


def rate_limited(reset: int, *, nsid: str = "com.atproto.repo.createRecord", method: str = "POST") -> Fault:
    """429 as the PDS sends it: RateLimit-Limit/-Remaining/-Reset (epoch seconds) and -Policy."""
    return Fault(
        status=429,
        body={"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        headers={
            "RateLimit-Limit": "5000",
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": "5000;w=3600",
        },
        path=XRPC + nsid,
        method=method,
    )


def server_error(status: int = 503, *, nsid: str = "com.atproto.repo.createRecord", method: str = "POST") -> Fault:
    return Fault(
        status=status,
        body={"error": "InternalServerError", "message": "Internal Server Error"},
        path=XRPC + nsid,
        method=method,
    )


def invalid_request(
    message: str = "Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes",
) -> Fault:
    return Fault(
        status=400, body={"error": "InvalidRequest", "message": message}, path=XRPC + "com.atproto.repo.createRecord"
    )


def held_after_create() -> Fault:
    """The record is made, the answer waits for release(): the window a crash test kills the worker in."""
    return Fault(hold=True, path=XRPC + "com.atproto.repo.createRecord")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _cid(data: bytes) -> str:
    return "bafyrei" + base64.b32encode(hashlib.sha256(data).digest()).decode().lower().rstrip("=")


class FakeBluesky(FakeHTTPServer):
    """One account on one PDS."""

    name = "fake-bluesky"

    def __init__(
        self,
        *,
        handle: str = "shortscience.test",
        password: str = "app-pass-word-1234",
        did: str = "did:plc:fakeshortscience0000000",
        display_name: str = "ShortScience",
        access_ttl: int = 7200,
        port: int = 0,
        delay: float = 0.0,
        keep_alive: bool = False,
    ) -> None:
        super().__init__(port=port, delay=delay, keep_alive=keep_alive)
        self.handle = handle
        self.password = password
        self.did = did
        self.display_name = display_name
        #: seconds an access token lives (its JWT `exp`; negative: issued already expired)
        self.access_ttl = access_ttl
        #: rkey → {"uri", "cid", "value"} of app.bsky.feed.post records, in creation order
        self.records: dict[str, dict[str, Any]] = {}
        #: uploaded blobs: cid → (mime type, bytes)
        self.blobs: dict[str, tuple[str, bytes]] = {}
        self.sessions_created = 0
        self.refreshes = 0
        #: every token pair handed out (createSession and refreshSession answers), in order
        self.issued: list[dict[str, Any]] = []
        self._serial = itertools.count(1)
        self._access: dict[str, bool] = {}  # token → still good
        self._refresh: dict[str, bool] = {}

    def _reset_state(self) -> None:
        self.records.clear()
        self.blobs.clear()
        self.sessions_created = 0
        self.refreshes = 0
        self.issued.clear()
        self._access.clear()
        self._refresh.clear()

    def posts_json(self) -> list[Any]:
        return list(self.records.values())

    # ---- scripted session trouble ----

    def expire_access(self) -> None:
        """Every access token issued so far is expired (the client's copy still looks valid)."""
        with self.lock:
            self._access = dict.fromkeys(self._access, False)

    def revoke_refresh(self) -> None:
        with self.lock:
            self._refresh = dict.fromkeys(self._refresh, False)

    # ---- answering ----

    def _jwt(self, scope: str, ttl: int) -> str:
        now = int(time.time())
        payload = {
            "scope": scope,
            "sub": self.did,
            "aud": "did:web:fake.pds",
            "iat": now,
            "exp": now + ttl,
            "jti": str(next(self._serial)),
        }
        return _b64({"typ": "JWT", "alg": "HS256"}) + "." + _b64(payload) + ".c2lnbmF0dXJl"

    def _issue(self) -> dict[str, Any]:
        access = self._jwt("com.atproto.appPass", self.access_ttl)
        refresh = self._jwt("com.atproto.refresh", 90 * 86400)
        self._access[access] = True
        self._refresh[refresh] = True
        self.issued.append({"accessJwt": access, "refreshJwt": refresh})
        return {"accessJwt": access, "refreshJwt": refresh, "handle": self.handle, "did": self.did, "active": True}

    def _bearer(self, request: Recorded) -> str | None:
        header = request.headers.get("authorization", "")
        return header[len("Bearer ") :] if header.startswith("Bearer ") else None

    def answer(self, request: Recorded) -> Answer:
        if not request.path.startswith(XRPC):
            return xrpc_error(404, "NotFound", "Not Found")
        nsid = request.path[len(XRPC) :]
        with self.lock:
            if nsid == "com.atproto.server.createSession" and request.method == "POST":
                return self._create_session(request)
            if nsid == "com.atproto.server.refreshSession" and request.method == "POST":
                return self._refresh_session(request)
            if nsid == "com.atproto.identity.resolveHandle":
                return self._resolve(request)
            token = self._bearer(request)
            if token is None:
                return xrpc_error(401, "AuthMissing", "Authentication Required")
            if not self._access.get(token, False):
                if token in self._access:
                    return xrpc_error(400, "ExpiredToken", "Token has expired")
                return xrpc_error(400, "InvalidToken", "Token could not be verified")
            handler = {
                "com.atproto.server.getSession": self._get_session,
                "app.bsky.actor.getProfile": self._profile,
                "com.atproto.repo.createRecord": self._create_record,
                "com.atproto.repo.getRecord": self._get_record,
                "com.atproto.repo.listRecords": self._list_records,
                "com.atproto.repo.uploadBlob": self._upload_blob,
            }.get(nsid)
            if handler is None:
                return xrpc_error(501, "MethodNotImplemented", f"Method Not Implemented: {nsid}")
            return handler(request)

    def _create_session(self, request: Recorded) -> Answer:
        body = request.json() or {}
        if body.get("identifier") not in (self.handle, self.did) or body.get("password") != self.password:
            return xrpc_error(401, "AuthenticationRequired", "Invalid identifier or password")
        self.sessions_created += 1
        return json_answer(200, self._issue())

    def _refresh_session(self, request: Recorded) -> Answer:
        token = self._bearer(request)
        if token is None:
            return xrpc_error(401, "AuthMissing", "Authentication Required")
        if not self._refresh.get(token, False):
            return xrpc_error(400, "ExpiredToken", "Token has been revoked")
        self._refresh[token] = False  # refresh tokens rotate: each is good once
        self.refreshes += 1
        return json_answer(200, self._issue())

    def _get_session(self, request: Recorded) -> Answer:
        return json_answer(200, {"handle": self.handle, "did": self.did, "active": True})

    def _resolve(self, request: Recorded) -> Answer:
        handle = (request.query.get("handle") or [""])[0]
        if handle.lower() != self.handle:
            return xrpc_error(400, "InvalidRequest", "Unable to resolve handle")
        return json_answer(200, {"did": self.did})

    def _profile(self, request: Recorded) -> Answer:
        actor = (request.query.get("actor") or [""])[0]
        if actor not in (self.handle, self.did):
            return xrpc_error(400, "InvalidRequest", "Profile not found")
        return json_answer(
            200,
            {"did": self.did, "handle": self.handle, "displayName": self.display_name, "postsCount": len(self.records)},
        )

    def _uri(self, rkey: str) -> str:
        return f"at://{self.did}/app.bsky.feed.post/{rkey}"

    def _create_record(self, request: Recorded) -> Answer:
        body = request.json() or {}
        if body.get("repo") not in (self.did, self.handle):
            return xrpc_error(400, "InvalidRequest", f"Could not find repo: {body.get('repo')}")
        collection = body.get("collection")
        record = body.get("record")
        if collection != "app.bsky.feed.post" or not isinstance(record, dict):
            return xrpc_error(400, "InvalidRequest", "Input/record must be an object")
        if record.get("$type", collection) != collection:
            return xrpc_error(400, "InvalidRequest", f"Invalid $type: expected {collection}, got {record.get('$type')}")
        rkey = body.get("rkey")
        if rkey is None:
            rkey = f"3l{next(self._serial):011d}"[:13].replace("0", "2").replace("1", "3")
        elif not TID_RE.fullmatch(str(rkey)):
            return xrpc_error(400, "InvalidRequest", f"Invalid record key for {collection}: must be a valid TID")
        problem = _post_problem(record)
        if problem:
            return xrpc_error(400, "InvalidRequest", f"Invalid {collection} record: {problem}")
        if rkey in self.records:
            # The MST refuses the add with a plain Error: the PDS hides it behind a bare 500.
            return xrpc_error(500, "InternalServerError", "Internal Server Error")
        cid = _cid(json.dumps(record, sort_keys=True).encode())
        self.records[rkey] = {"uri": self._uri(rkey), "cid": cid, "value": record}
        return json_answer(
            200,
            {
                "uri": self._uri(rkey),
                "cid": cid,
                "commit": {"cid": _cid(cid.encode()), "rev": rkey},
                "validationStatus": "valid",
            },
        )

    def _get_record(self, request: Recorded) -> Answer:
        rkey = (request.query.get("rkey") or [""])[0]
        found = self.records.get(rkey)
        if found is None or (request.query.get("collection") or [""])[0] != "app.bsky.feed.post":
            return xrpc_error(400, "RecordNotFound", f"Could not locate record: {self._uri(rkey)}")
        return json_answer(200, found)

    def _list_records(self, request: Recorded) -> Answer:
        limit = int((request.query.get("limit") or ["50"])[0])
        newest = sorted(self.records, reverse=True)[:limit]
        return json_answer(200, {"records": [self.records[k] for k in newest]})

    def _upload_blob(self, request: Recorded) -> Answer:
        mime = request.headers.get("content-type", "*/*")
        if not request.body:
            return xrpc_error(400, "InvalidRequest", "Request body is empty")
        cid = _cid(request.body)
        self.blobs[cid] = (mime, request.body)
        return json_answer(
            200, {"blob": {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": len(request.body)}}
        )

    def web_url(self, rkey: str) -> str:
        return f"https://bsky.app/profile/{quote(self.did)}/post/{rkey}"


def _post_problem(record: dict[str, Any]) -> str | None:
    """What the post lexicon refuses of what we send (text length, facets, langs, createdAt)."""
    text = record.get("text")
    if not isinstance(text, str):
        return "Record/text must be a string"
    if len(text.encode("utf-8")) > 3000:
        return "Record/text must not be longer than 3000 bytes"
    if len(regex.findall(r"\X", text)) > 300:
        return "Record/text must not be longer than 300 graphemes"
    if not isinstance(record.get("createdAt"), str):
        return 'Record must have the property "createdAt"'
    langs = record.get("langs", [])
    if not isinstance(langs, list) or len(langs) > 3:
        return "Record/langs must not have more than 3 elements"
    size = len(text.encode("utf-8"))
    for facet in record.get("facets", []):
        index = facet.get("index", {})
        start, end = index.get("byteStart"), index.get("byteEnd")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= size):
            return "Record/facets/index must be a byte range within the text"
    return None


if __name__ == "__main__":
    import argparse

    from fake_x import serve_main

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--handle", default="shortscience.test")
    parser.add_argument("--password", default="app-pass-word-1234")
    args = parser.parse_args()
    serve_main(FakeBluesky(port=args.port, handle=args.handle, password=args.password))
