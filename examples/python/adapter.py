#!/usr/bin/env python3
"""A small provincial-system adapter for a Caseway node, in Python with gRPC.

It shows the three things a provincial population system does with its node:

  publish FILE.csv   publish one notice per CSV row (one PublishBatch); a refusal prints every
                     bad field of every row from the google.rpc.BadRequest details
  follow             read the inbox, acknowledge each notice once handled, and answer every
                     verification request with a feedback notice (outcome CONFIRMED)
  case CASE_ID       print the case's timeline as the node holds it (Gateway.Case)

Stubs are generated from proto/ at build time (build/examples/python, see README.md); run with
Debian's python3-grpcio and python3-protobuf:

  PYTHONPATH=build/examples/python python3 examples/python/adapter.py \\
      --address localhost:7443 --ca pki/ca.crt --cert office.crt --key office.key publish rows.csv
"""
import argparse
import csv
import datetime
import json
import sys

import queue

import grpc
from google.protobuf import json_format, timestamp_pb2

from caseway.v1 import gateway_pb2, gateway_pb2_grpc, notice_pb2
from google.rpc import error_details_pb2, status_pb2


def connect(args):
    """A Gateway stub over mutual TLS with this office's client certificate."""
    def read(path):
        with open(path, "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca), private_key=read(args.key),
        certificate_chain=read(args.cert))
    return gateway_pb2_grpc.GatewayStub(grpc.secure_channel(args.address, creds))


def explain(err):
    """Prints a refusal: its code, its stable reason and every bad field."""
    print(f"refused: {err.code().name}: {err.details()}", file=sys.stderr)
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                print(f"  reason: {info.reason}", file=sys.stderr)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                for v in bad.field_violations:
                    print(f"  {v.field}: {v.description}", file=sys.stderr)


def cst_timestamp(text):
    """'2026-11-30 09:15' in China Standard Time as a protobuf Timestamp."""
    t = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(
        tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t.astimezone(datetime.timezone.utc))
    return ts


def notice_from_row(row):
    """Maps one CSV row of the provincial system to a caseway.v1.Notice."""
    n = notice_pb2.Notice(
        notice_id=row["notice_id"], case_id=row["case_id"],
        destinations=row["destinations"].split(";"),
        priority=notice_pb2.PRIORITY_SUBJECT if row["priority"] == "subject"
        else notice_pb2.PRIORITY_NORMAL)
    n.occurred_at.CopyFrom(cst_timestamp(row["occurred_at"]))
    s = n.subject
    s.name = row["name"]
    s.id_number = row["id_number"]
    s.sex = notice_pb2.SEX_FEMALE if row["sex"] == "F" else notice_pb2.SEX_MALE
    year, month, day = (int(x) for x in row["birth_date"].split("-"))
    s.birth_date.year, s.birth_date.month, s.birth_date.day = year, month, day
    s.registered_region = row["registered_region"]
    if row["kind"] == "verification_request":
        n.verification_request.request_id = row["notice_id"]
        n.verification_request.items.extend(row["items"].split(";"))
    elif row["kind"] == "departure":
        rc = n.residence_change
        rc.direction = notice_pb2.ResidenceChange.DIRECTION_DEPARTURE
        d = datetime.date.fromisoformat(row["occurred_at"][:10])
        rc.effective_date.year, rc.effective_date.month, rc.effective_date.day = d.year, d.month, d.day
        rc.residence_region = row["destinations"].split(";")[0]
    else:
        raise ValueError(f"kind: {row['kind']} is not verification_request or departure")
    return n


def publish(stub, args):
    with open(args.file, newline="", encoding="utf-8") as f:
        notices = [notice_from_row(row) for row in csv.DictReader(f)]
    try:
        resp = stub.PublishBatch(gateway_pb2.PublishBatchRequest(
            notices=notices, validate_only=args.dry_run), timeout=30)
    except grpc.RpcError as err:
        explain(err)
        return 1
    for r in resp.results:
        seqs = ",".join(f"{d.destination}:{d.seq}" for d in r.deliveries)
        print(f"{r.notice_id}\t{'duplicate' if r.duplicate else 'stored'}\t{seqs}")
    return 0


def feedback_for(item):
    """The feedback notice answering a received verification request."""
    request = item.notice
    n = notice_pb2.Notice(
        # Deterministic: answering the same request twice publishes the same notice (a retry).
        notice_id=f"fb-{item.origin}-{request.notice_id}", case_id=request.case_id,
        destinations=[item.origin], priority=request.priority,
        in_reply_to=request.notice_id, in_reply_to_origin=item.origin)
    n.subject.CopyFrom(request.subject)
    n.occurred_at.GetCurrentTime()
    n.feedback.outcome = notice_pb2.Feedback.OUTCOME_CONFIRMED
    return n


def follow(stub, args):
    """Reads the inbox with acks; answers verification requests; stops after --limit items."""
    handled = []
    done = {"n": 0}
    acks = queue.Queue()  # inbox_seqs to acknowledge; None half-closes the stream

    def requests():
        yield gateway_pb2.InboxRequest(start=gateway_pb2.InboxRequest.Start(
            follow=args.limit > 0, ack=True, purpose=args.purpose))
        while True:
            seq = acks.get()
            if seq is None:
                return  # the node commits the acks sent, then ends the stream with OK
            yield gateway_pb2.InboxRequest(ack=gateway_pb2.InboxRequest.Ack(inbox_seqs=[seq]))

    try:
        for resp in stub.Inbox(requests(), timeout=args.timeout):
            if resp.HasField("caught_up"):
                if args.limit == 0:
                    acks.put(None)
                continue
            if args.limit and done["n"] >= args.limit:
                continue  # past the limit: left unacknowledged, delivered again next time
            item = resp.item
            kind = item.notice.WhichOneof("body")
            print(json.dumps({"inbox_seq": item.inbox_seq, "origin": item.origin,
                              "notice_id": item.notice.notice_id, "kind": kind}))
            if kind == "verification_request" and args.answer:
                stub.Publish(gateway_pb2.PublishRequest(notice=feedback_for(item)), timeout=30)
                print(json.dumps({"answered": item.notice.notice_id}))
            # Acknowledge only after the office's system (here: the feedback) has committed.
            acks.put(item.inbox_seq)
            handled.append(item.inbox_seq)
            done["n"] += 1
            if args.limit and done["n"] >= args.limit:
                acks.put(None)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            print(f"stopped after {args.timeout}s with {len(handled)} notices", file=sys.stderr)
            return 1
        explain(err)
        return 1
    print(f"handled {len(handled)} notices", file=sys.stderr)
    return 0


def case(stub, args):
    try:
        resp = stub.Case(gateway_pb2.CaseRequest(case_id=args.case_id, purpose=args.purpose),
                         timeout=30)
    except grpc.RpcError as err:
        explain(err)
        return 1
    for e in resp.events:
        print(json_format.MessageToJson(e, indent=None, preserving_proto_field_name=True))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--address", required=True, help="the node, host:port")
    p.add_argument("--ca", required=True, help="the federation CA certificate (PEM)")
    p.add_argument("--cert", required=True, help="this office's client certificate (PEM)")
    p.add_argument("--key", required=True, help="its private key (PEM)")
    p.add_argument("--purpose", default="inflow processing by the provincial system",
                   help="why personal data is read (follow, case): kept in the node's access log")
    sub = p.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="publish the notices of a CSV file")
    pub.add_argument("file")
    pub.add_argument("--dry-run", action="store_true", help="validate only, store nothing")
    fol = sub.add_parser("follow", help="read the inbox, ack, answer verification requests")
    fol.add_argument("--limit", type=int, default=0,
                     help="wait for this many notices, then stop (0: what is there now)")
    fol.add_argument("--timeout", type=float, default=60, help="give up after this many seconds")
    fol.add_argument("--answer", action="store_true",
                     help="answer each verification request with a CONFIRMED feedback")
    cas = sub.add_parser("case", help="print a case's timeline (caseway.v1.CaseEvent JSON lines)")
    cas.add_argument("case_id")
    args = p.parse_args()
    stub = connect(args)
    return {"publish": publish, "follow": follow, "case": case}[args.command](stub, args)


if __name__ == "__main__":
    sys.exit(main())
