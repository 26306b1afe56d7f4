//! `vaultctl demo-data`: deterministic synthetic citizens of Ho Chi Minh City as JSONL.
//! Invented people only: names, ids, addresses and numbers are drawn from a seeded PRNG, so
//! the same `--count` and `--seed` always give byte-identical output.

use std::collections::HashSet;
use std::io::{BufWriter, Write};

use serde_json::{Map, Value, json};
use vault_core::geo::HCMC_UNITS;

use super::{CtlError, CtlResult};

const FAMILY: &[&str] = &[
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
    "Hồ", "Ngô", "Dương", "Lý", "Trương", "Đinh", "Lâm", "Mai", "Tạ", "Châu", "Quách", "La",
];
const MIDDLE_M: &[&str] = &[
    "Văn", "Hữu", "Đức", "Minh", "Quốc", "Thành", "Gia", "Công", "Tấn", "Hoàng", "Nhật",
];
const MIDDLE_F: &[&str] = &[
    "Thị", "Ngọc", "Thanh", "Kim", "Bảo", "Mỹ", "Thu", "Phương", "Diễm", "Hồng", "Quỳnh",
];
const GIVEN_M: &[&str] = &[
    "An", "Bình", "Cường", "Dũng", "Duy", "Hải", "Hiếu", "Hùng", "Huy", "Khang", "Khánh", "Khoa",
    "Long", "Lộc", "Nam", "Nghĩa", "Phát", "Phong", "Phúc", "Quân", "Quang", "Sơn", "Tài", "Thắng",
    "Thịnh", "Tiến", "Trí", "Trung", "Tuấn", "Việt", "Vinh", "Vũ",
];
const GIVEN_F: &[&str] = &[
    "Anh",
    "Châu",
    "Diệp",
    "Dung",
    "Giang",
    "Hà",
    "Hạnh",
    "Hằng",
    "Hoa",
    "Hương",
    "Lan",
    "Liên",
    "Linh",
    "Mai",
    "My",
    "Nga",
    "Ngân",
    "Nhung",
    "Oanh",
    "Phượng",
    "Quyên",
    "Thảo",
    "Thư",
    "Trang",
    "Trinh",
    "Tuyết",
    "Uyên",
    "Vân",
    "Vy",
    "Xuân",
    "Yến",
    "Hân",
];
const STREETS: &[&str] = &[
    "Lê Lợi",
    "Nguyễn Huệ",
    "Hai Bà Trưng",
    "Pasteur",
    "Điện Biên Phủ",
    "Cách Mạng Tháng Tám",
    "Võ Văn Tần",
    "Nguyễn Thị Minh Khai",
    "Trần Hưng Đạo",
    "Lý Thường Kiệt",
    "Ba Tháng Hai",
    "Phan Xích Long",
    "Nguyễn Văn Linh",
    "Huỳnh Tấn Phát",
    "Lê Văn Sỹ",
    "Nguyễn Đình Chiểu",
    "Xô Viết Nghệ Tĩnh",
    "Phan Đăng Lưu",
    "Quang Trung",
    "Nguyễn Oanh",
    "Âu Cơ",
    "Lạc Long Quân",
    "Kinh Dương Vương",
    "Tỉnh Lộ 10",
    "Xa Lộ Hà Nội",
    "Võ Văn Ngân",
    "Thảo Điền",
    "Nguyễn Thị Thập",
    "Hậu Giang",
    "Hồng Bàng",
    "Tôn Đức Thắng",
    "Bến Vân Đồn",
];
const PROVINCES: &[&str] = &[
    "Thành phố Hồ Chí Minh",
    "Thành phố Hồ Chí Minh",
    "Thành phố Hồ Chí Minh",
    "Đồng Nai",
    "Tây Ninh",
    "Cần Thơ",
    "Vĩnh Long",
    "Đồng Tháp",
    "An Giang",
    "Hà Nội",
    "Huế",
    "Đà Nẵng",
    "Quảng Ngãi",
    "Gia Lai",
    "Khánh Hòa",
    "Lâm Đồng",
    "Đắk Lắk",
    "Nghệ An",
    "Thanh Hóa",
    "Cà Mau",
];
const OCCUPATIONS: &[&str] = &[
    "Giáo viên",
    "Kỹ sư phần mềm",
    "Công nhân may",
    "Kế toán",
    "Nhân viên văn phòng",
    "Bác sĩ",
    "Điều dưỡng",
    "Tài xế công nghệ",
    "Kinh doanh tự do",
    "Thợ điện",
    "Nông dân",
    "Nhân viên bán hàng",
    "Đầu bếp",
    "Kiến trúc sư",
    "Công chức",
    "Sinh viên",
];
const EMPLOYERS: &[&str] = &[
    "Công ty TNHH Điện tử Sài Gòn",
    "Công ty Cổ phần Sữa Việt Nam",
    "Bệnh viện Nhân dân 115",
    "Trường THCS Nguyễn Du",
    "Công ty TNHH May Việt Tiến",
    "Ngân hàng TMCP Á Châu",
    "Ủy ban nhân dân Quận 3",
    "Công ty Cổ phần Xây dựng Hòa Bình",
    "Tổng công ty Cấp nước Sài Gòn",
];
const PHONE_PREFIXES: &[&str] = &[
    "090", "093", "089", "070", "076", "077", "078", "079", "091", "094", "081", "083", "084",
    "085", "088", "096", "097", "098", "086", "032", "033", "034", "035", "036", "037", "038",
    "039",
];
const HEALTH: &[&str] = &[
    "Tăng huyết áp độ 1, đang điều trị",
    "Đái tháo đường type 2",
    "Dị ứng penicillin",
    "Hen phế quản",
    "Viêm gan B mạn tính",
    "Thiếu máu nhẹ",
    "Đã phẫu thuật ruột thừa năm 2015",
];
const SHOPS: &[&str] = &[
    "Tiệm tạp hóa",
    "Quán cơm",
    "Tiệm may",
    "Tiệm sửa xe",
    "Quán cà phê",
    "Tiệm bánh mì",
];
const EDUCATION: &[&str] = &[
    "trung học cơ sở",
    "trung học phổ thông",
    "cao đẳng",
    "đại học",
    "sau đại học",
];
const LICENCE_CLASSES: &[&str] = &["A1", "A", "B", "B", "C1", "C"];
const HI_CODES: &[&str] = &["DN", "HC", "GD", "HT", "TE", "HS", "CK", "BT"];

/// xoshiro256** seeded through SplitMix64: small, fast and fully deterministic.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        items.get(i).copied().unwrap_or_default()
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + u8::try_from(self.below(10)).unwrap_or(0)))
            .collect()
    }
}

fn strip_diacritics(s: &str) -> String {
    const MAP: &[(&str, char)] = &[
        ("àáạảãâầấậẩẫăằắặẳẵ", 'a'),
        ("èéẹẻẽêềếệểễ", 'e'),
        ("ìíịỉĩ", 'i'),
        ("òóọỏõôồốộổỗơờớợởỡ", 'o'),
        ("ùúụủũưừứựửữ", 'u'),
        ("ỳýỵỷỹ", 'y'),
        ("đ", 'd'),
    ];
    s.to_lowercase()
        .chars()
        .filter_map(|c| {
            let c = MAP
                .iter()
                .find(|(set, _)| set.contains(c))
                .map_or(c, |(_, r)| *r);
            c.is_ascii_alphanumeric().then_some(c)
        })
        .collect()
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The reference date ages are computed against (fixed, so output is deterministic).
const REFERENCE_YEAR: u64 = 2026;

struct Person {
    male: bool,
    name: String,
}

fn person(rng: &mut Rng, family: Option<&str>, male: bool) -> Person {
    let family = family.map_or_else(|| rng.pick(FAMILY).to_owned(), str::to_owned);
    let (middle, given) = if male {
        (rng.pick(MIDDLE_M), rng.pick(GIVEN_M))
    } else {
        (rng.pick(MIDDLE_F), rng.pick(GIVEN_F))
    };
    Person {
        male,
        name: format!("{family} {middle} {given}"),
    }
}

fn phone(rng: &mut Rng) -> String {
    format!("{}{}", rng.pick(PHONE_PREFIXES), rng.digits(7))
}

fn citizen(rng: &mut Rng, used: &mut HashSet<u64>) -> (String, Map<String, Value>) {
    let male = rng.chance(49);
    let me = person(rng, None, male);
    let family = me.name.split(' ').next().unwrap_or("Nguyễn").to_owned();
    let year = 1940 + rng.below(86);
    let month = 1 + rng.below(12);
    let day = 1 + rng.below(days_in_month(year, month));
    let age = REFERENCE_YEAR - year;
    let century_digit = match (year >= 2000, male) {
        (false, true) => 0,
        (false, false) => 1,
        (true, true) => 2,
        (true, false) => 3,
    };
    let id = loop {
        let id = format!("079{century_digit}{:02}{}", year % 100, rng.digits(6));
        if used.insert(id.parse().unwrap_or(0)) {
            break id;
        }
    };
    // Two tiers since 1 July 2025: the ward (or commune, or special zone) and the city.
    let unit = &HCMC_UNITS[usize::try_from(rng.below(HCMC_UNITS.len() as u64)).unwrap_or(0)];
    let address = format!(
        "{}{} {}, {}, Thành phố Hồ Chí Minh",
        1 + rng.below(450),
        if rng.chance(20) {
            format!("/{}", 1 + rng.below(60))
        } else {
            String::new()
        },
        rng.pick(STREETS),
        unit.name
    );
    let mut f = Map::new();
    let mut put = |k: &str, v: Value| {
        f.insert(k.to_owned(), v);
    };
    put("full_name", json!(me.name));
    put(
        "date_of_birth",
        json!(format!("{year:04}-{month:02}-{day:02}")),
    );
    put("sex", json!(if me.male { "Nam" } else { "Nữ" }));
    put("nationality", json!("Việt Nam"));
    put("place_of_birth", json!(rng.pick(PROVINCES)));
    put("hometown", json!(rng.pick(PROVINCES)));
    put(
        "current_address",
        json!(if rng.chance(20) {
            format!(
                "{} {}, {}, Thành phố Hồ Chí Minh",
                1 + rng.below(300),
                rng.pick(STREETS),
                unit.name
            )
        } else {
            address.clone()
        }),
    );
    put("permanent_address", json!(address));
    put("residence_ward", json!(unit.id));
    put("father_name", json!(person(rng, Some(&family), true).name));
    put("mother_name", json!(person(rng, None, false).name));
    let ethnicity = match rng.below(100) {
        0..=89 => "Kinh",
        90..=95 => "Hoa",
        96..=97 => "Khmer",
        98 => "Chăm",
        _ => "Tày",
    };
    put("ethnicity", json!(ethnicity));
    let religion = match rng.below(100) {
        0..=69 => "Không",
        70..=84 => "Phật giáo",
        85..=94 => "Công giáo",
        95..=96 => "Cao Đài",
        97..=98 => "Tin Lành",
        _ => "Phật giáo Hòa Hảo",
    };
    put("religion", json!(religion));
    let blood = ["O+", "O+", "O+", "A+", "A+", "B+", "B+", "AB+", "O-", "A-"];
    put(
        "blood_type",
        json!(blood[usize::try_from(rng.below(10)).unwrap_or(0)]),
    );
    let si = format!("79{}", rng.digits(8));
    put(
        "health_insurance_number",
        json!(format!("{}{}79{si}", rng.pick(HI_CODES), 1 + rng.below(5))),
    );
    if rng.chance(25) {
        put("health_notes", json!(rng.pick(HEALTH)));
    }
    if rng.chance(3) {
        put("disability_status", json!("Khuyết tật vận động mức độ nhẹ"));
    }
    put(
        "fingerprint_template_ref",
        json!(format!("fp-{:016x}", rng.next_u64())),
    );
    if rng.chance(60) {
        put("phone", json!(phone(rng)));
    }
    if age >= 18 {
        let email_user = strip_diacritics(me.name.split(' ').next_back().unwrap_or("a"));
        if rng.chance(50) {
            put(
                "email",
                json!(format!(
                    "{email_user}.{}{}@gmail.com",
                    strip_diacritics(&family),
                    rng.digits(3)
                )),
            );
        }
        put("social_insurance_number", json!(si));
        let married = age >= 22 && rng.chance(65);
        put(
            "marital_status",
            json!(if married {
                "đã kết hôn"
            } else if age > 60 && rng.chance(20) {
                "góa"
            } else {
                "độc thân"
            }),
        );
        if married {
            let spouse = person(rng, None, !me.male);
            put("spouse_name", json!(spouse.name));
            if rng.chance(70) && age < 70 {
                let kids = 1 + rng.below(3);
                let list: Vec<String> = (0..kids)
                    .map(|_| {
                        let boy = rng.chance(50);
                        let child = person(rng, Some(&family), boy);
                        let cy = (year + 22 + rng.below(15)).min(REFERENCE_YEAR - 1);
                        format!("{} ({cy})", child.name)
                    })
                    .collect();
                put("dependents", json!(list));
            }
        }
        put("occupation", json!(rng.pick(OCCUPATIONS)));
        if rng.chance(60) {
            put("employer", json!(rng.pick(EMPLOYERS)));
        }
        put("education_level", json!(rng.pick(EDUCATION)));
        put("tax_code", json!(format!("8{}", rng.digits(9))));
        put(
            "annual_income",
            json!(30_000_000 + rng.below(600) * 1_000_000),
        );
        if rng.chance(60) {
            let len = 10 + usize::try_from(rng.below(5)).unwrap_or(0);
            put("bank_account", json!(rng.digits(len)));
        }
        if rng.chance(55) {
            put(
                "driver_licence_number",
                json!(format!("79{}", rng.digits(10))),
            );
            put("driver_licence_class", json!(rng.pick(LICENCE_CLASSES)));
            let ey = REFERENCE_YEAR - 2 + rng.below(10);
            let em = 1 + rng.below(12);
            put(
                "driver_licence_expiry",
                json!(format!("{ey:04}-{em:02}-{:02}", 1 + rng.below(28))),
            );
        }
        if rng.chance(6) {
            put(
                "household_business_name",
                json!(format!(
                    "{} {}",
                    rng.pick(SHOPS),
                    me.name.split(' ').next_back().unwrap_or("")
                )),
            );
        }
        if rng.chance(12) {
            put(
                "land_use_certificate_number",
                json!(format!("CS{}", rng.digits(6))),
            );
        }
        put(
            "criminal_record",
            json!(if rng.chance(2) {
                "Có 01 án tích đã được xóa"
            } else {
                "Không có án tích"
            }),
        );
        let male = rng.chance(50);
        let contact = person(rng, None, male).name;
        put(
            "emergency_contact",
            json!(format!("{contact} - {}", phone(rng))),
        );
    } else {
        put("marital_status", json!("độc thân"));
        put(
            "education_level",
            json!(if age >= 11 {
                "trung học cơ sở"
            } else {
                "tiểu học"
            }),
        );
        put(
            "emergency_contact",
            json!(format!(
                "{} - {}",
                person(rng, Some(&family), true).name,
                phone(rng)
            )),
        );
    }
    if rng.chance(5) {
        put(
            "last_known_location",
            json!(format!(
                "10.{:04},106.{:04}",
                7000 + rng.below(1000),
                6000 + rng.below(1500)
            )),
        );
    }
    (id, f)
}

pub(super) fn run(count: u64, seed: u64) -> CtlResult {
    write(std::io::stdout().lock(), count, seed)
}

/// Writes `count` demo citizens as JSONL.
pub(super) fn write(out: impl Write, count: u64, seed: u64) -> CtlResult {
    let mut w = BufWriter::with_capacity(1 << 16, out);
    let mut rng = Rng::new(seed);
    let mut used = HashSet::new();
    for _ in 0..count {
        let (id, fields) = citizen(&mut rng, &mut used);
        serde_json::to_writer(&mut w, &json!({"citizen_id": id, "fields": fields}))
            .map_err(|e| CtlError(format!("cannot write: {e}")))?;
        w.write_all(b"\n")
            .map_err(|e| CtlError(format!("cannot write: {e}")))?;
    }
    w.flush()
        .map_err(|e| CtlError(format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_people_and_ids_are_structured() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let (mut ua, mut ub) = (HashSet::new(), HashSet::new());
        for _ in 0..200 {
            let (ia, fa) = citizen(&mut a, &mut ua);
            let (ib, fb) = citizen(&mut b, &mut ub);
            assert_eq!((ia.clone(), fa.clone()), (ib, fb));
            assert_eq!(ia.len(), 12);
            assert!(ia.starts_with("079"));
            let dob = fa["date_of_birth"].as_str().unwrap();
            assert_eq!(&ia[4..6], &dob[2..4], "birth year digits");
            let male = fa["sex"] == "Nam";
            let century = ia.as_bytes()[3] - b'0';
            assert_eq!(century.is_multiple_of(2), male);
        }
    }

    #[test]
    fn diacritics_are_stripped_for_emails() {
        assert_eq!(strip_diacritics("Nguyễn Đức"), "nguyenduc");
    }
}
