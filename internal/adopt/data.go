package adopt

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sessiongate/caddy-session/internal/protocol"
)

// maxDepth bounds the nesting of converted BSON, as MongoDB bounds it.
const maxDepth = 100

// decodeObject decodes a JSON object into its top-level members.
func decodeObject(raw []byte) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, errors.New("not JSON")
		}
		return nil, errors.New("not a JSON object")
	}
	if obj == nil {
		return nil, errors.New("not a JSON object")
	}
	return obj, nil
}

// jsonNumber returns v as a float64 if it is a JSON number.
func jsonNumber(v json.RawMessage) (float64, bool) {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	return f, err == nil
}

// checked drops the bookkeeping members from obj and runs the rest
// through the Check. reason is set when the data is refused.
func (s *Source) checked(obj map[string]json.RawMessage, bookkeeping func(string) bool) (data []byte, reason string) {
	for k := range obj {
		if bookkeeping(k) {
			delete(obj, k)
		}
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, "malformed session"
	}
	data, err = s.check(raw)
	if err != nil {
		return nil, "data refused: " + err.Error()
	}
	return data, ""
}

// appendBSONValue appends v as JSON, the way the legacy app saw it after
// the MongoDB driver read it and JSON.stringify wrote it: dates as ISO
// strings (Date.prototype.toJSON), ObjectIds as hex, NaN and infinities as
// null. Types a session cannot hold in JSON are refused.
func appendBSONValue(dst []byte, v bson.RawValue, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("nested too deep")
	}
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		return appendBSONDocument(dst, v.Document(), depth+1)
	case bson.TypeArray:
		vals, err := v.Array().Values()
		if err != nil {
			return nil, errors.New("bad BSON array")
		}
		dst = append(dst, '[')
		for i, e := range vals {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendBSONValue(dst, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case bson.TypeString:
		return protocol.AppendString(dst, v.StringValue()), nil
	case bson.TypeDouble:
		if f := v.Double(); finite(f) {
			return protocol.AppendFloat(dst, f), nil
		}
		return append(dst, "null"...), nil
	case bson.TypeInt32:
		return strconv.AppendInt(dst, int64(v.Int32()), 10), nil
	case bson.TypeInt64:
		return strconv.AppendInt(dst, v.Int64(), 10), nil
	case bson.TypeBoolean:
		return strconv.AppendBool(dst, v.Boolean()), nil
	case bson.TypeNull, bson.TypeUndefined:
		return append(dst, "null"...), nil
	case bson.TypeDateTime:
		t := time.UnixMilli(v.DateTime()).UTC()
		return protocol.AppendString(dst, t.Format("2006-01-02T15:04:05.000Z")), nil
	case bson.TypeObjectID:
		return protocol.AppendString(dst, v.ObjectID().Hex()), nil
	}
	return nil, fmt.Errorf("unsupported BSON type %s", v.Type)
}

func appendBSONDocument(dst []byte, d bson.Raw, depth int) ([]byte, error) {
	elems, err := d.Elements()
	if err != nil {
		return nil, errors.New("bad BSON document")
	}
	dst = append(dst, '{')
	for i, e := range elems {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = protocol.AppendString(dst, e.Key())
		dst = append(dst, ':')
		if dst, err = appendBSONValue(dst, e.Value(), depth); err != nil {
			return nil, err
		}
	}
	return append(dst, '}'), nil
}
